"""Reading spans back from a test's Phoenix (``servers.phoenix.PhoenixServer``) over its REST
API: ``wait_for_spans(phoenix, predicate)`` polls until the exported spans are there."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from servers._common import NO_PROXY_OPENER
from servers.cache import log_tail
from servers.phoenix import DEFAULT_PROJECT, PhoenixServer, PhoenixServerError

MAX_PAGE_SIZE = 1000


def flatten_attributes(attributes: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested attribute dicts -> one flat dict with dotted OTel names.

    ``{"gen_ai": {"usage": {"input_tokens": 12}}}`` -> ``{"gen_ai.usage.input_tokens": 12}``.
    Lists of dicts become ``key.0.sub`` entries (Phoenix's own convention, e.g.
    ``llm.input_messages.0.message.role``); lists of plain values stay lists.
    """
    flat: dict[str, Any] = {}
    for key, value in attributes.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_attributes(value, name + "."))
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    flat.update(flatten_attributes(item, f"{name}.{i}."))
                else:
                    flat[f"{name}.{i}"] = item
        else:
            flat[name] = value
    return flat


def _start_time(span: Mapping[str, Any]) -> datetime:
    # ISO 8601 with a UTC offset; not compared as strings since fractions of a second vary.
    try:
        return datetime.fromisoformat(str(span.get("start_time")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _get_json(phoenix: PhoenixServer, path: str, params: Mapping[str, Any]) -> tuple[int, Any]:
    url = f"{phoenix.url}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with NO_PROXY_OPENER.open(request, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        raise PhoenixServerError(f"GET {url} failed: {exc}") from exc


def spans(
    phoenix: PhoenixServer, project: str = DEFAULT_PROJECT, limit: int = 1000
) -> list[dict[str, Any]]:
    """Up to ``limit`` newest spans of ``project``, oldest first (by start time).

    Reads ``GET /v1/projects/{project}/spans`` page by page (cursor). Each dict is Phoenix's
    span as that route returns it, with ``attributes`` flattened to dotted OTel names::

        {"id": "U3BhbjoyNQ==", "name": "chat", "span_kind": "LLM",
         "context": {"trace_id": "<32 hex>", "span_id": "<16 hex>"},
         "parent_id": "<16 hex>" | None,
         "start_time": "2026-...T...+00:00", "end_time": "...",
         "status_code": "OK" | "ERROR" | "UNSET", "status_message": "",
         "attributes": {"gen_ai.usage.input_tokens": 12, ...}, "events": [...]}

    ``span_kind`` is the OpenInference kind (LLM, CHAIN, TOOL, ..., UNKNOWN), from the
    ``openinference.span.kind`` attribute or inferred from ``gen_ai.*`` attributes; Phoenix
    does not keep the OTel SpanKind. A project without spans does not exist yet: ``[]``.
    """
    if not project or any(c in project for c in "/?#"):
        raise ValueError(f"Phoenix project names used in URLs cannot contain / ? #: {project!r}")
    path = f"/v1/projects/{urllib.parse.quote(project, safe='')}/spans"
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(out) < limit:
        params: dict[str, Any] = {"limit": min(limit - len(out), MAX_PAGE_SIZE)}
        if cursor:
            params["cursor"] = cursor
        status, body = _get_json(phoenix, path, params)
        if status == 404 and not out:
            return []  # project not created yet (no span received for it)
        if status != 200 or not isinstance(body, dict):
            raise PhoenixServerError(f"GET {phoenix.url}{path} answered {status}: {body!r:.500}")
        for span in body.get("data") or []:
            span["attributes"] = flatten_attributes(span.get("attributes") or {})
            out.append(span)
        cursor = body.get("next_cursor")
        if not cursor:
            break
    out.sort(key=_start_time)  # stable: ties keep Phoenix's order
    return out


def wait_for_spans(
    phoenix: PhoenixServer,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30.0,
    *,
    project: str = DEFAULT_PROJECT,
    limit: int = 1000,
    interval: float = 0.5,
) -> list[dict[str, Any]]:
    """Poll ``spans`` until ``predicate(spans)`` is true; return them. Export is asynchronous
    on both sides (the client's BatchSpanProcessor, then Phoenix's bulk inserter): call the
    client's ``force_flush()`` first, and still expect a second or so of delay."""
    deadline = time.monotonic() + timeout
    while True:
        if not phoenix.is_running():
            raise PhoenixServerError("Phoenix is not running.\n" + log_tail(phoenix.log_path))
        found = spans(phoenix, project, limit)
        if predicate(found):
            return found
        if time.monotonic() > deadline:
            names = sorted({str(s.get("name")) for s in found})
            raise TimeoutError(
                f"no span set in Phoenix project {project!r} matched within {timeout:.0f}s; "
                f"it has {len(found)} span(s) named {names[:20]}"
            )
        time.sleep(interval)
