"""What every HTTP door checks before a request reaches a route: ``a2r serve`` wraps its app in
:class:`Guard`; LangGraph Server wraps each of its routes (``langgraph.json``: the app's
middleware, ``middleware_order: auth_first``), its own included.

In order, a request is refused

- 404 on a development-only route of ``langgraph dev`` (``/internal/*`` wipes or reads every
  thread, ``/deploy``, ``/ui``): a deployment never needs them;
- 403 with a ``Host`` the deployment does not serve (DNS rebinding) or a foreign ``Origin`` (a
  web page the operator opened); ``A2R_SERVER_ALLOWED_HOSTS`` / ``_ORIGINS`` widen them;
- 401 without the key, on every route but the health checks (``/ok``, ``/``);
- 415 with a body that is not JSON, 413 over ``A2R_SERVER_MAX_BODY_BYTES``, 400 with JSON
  nested deeper than :data:`MAX_JSON_DEPTH`, on the methods that change state.

Requests of the server to itself (langgraph-sdk's in-process client, ``root_path`` /noauth,
which no request from outside can set) pass unchecked. :class:`CancelOnDisconnect` stops a
request's work once its caller has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from langgraph_sdk import Auth
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from a2r_graph.serving.run_options import ServerSettings

HEALTH_PATHS = frozenset({"/ok", "/"})
DEVELOPMENT_ONLY = ("/internal/", "/deploy", "/ui")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_JSON_DEPTH = 64
"""Deeper JSON is refused before any parser recurses into it (Python's recursion limit is
about 1000: deeper, ``json.loads`` and validators raise ``RecursionError``)."""


class Refusal(Exception):
    """A request the guard refuses: its status and what the caller must change."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def openai_error(refusal: Refusal) -> JSONResponse:
    """OpenAI's error body (``a2r serve``, ``/v1`` on LangGraph Server)."""
    kind = "invalid_request_error" if refusal.status < 500 else "server_error"
    error = {"message": refusal.message, "type": kind, "param": None, "code": refusal.code}
    headers = {"www-authenticate": "Bearer"} if refusal.status == 401 else None
    return JSONResponse({"error": error}, status_code=refusal.status, headers=headers)


def langgraph_error(refusal: Refusal) -> JSONResponse:
    """LangGraph Server's error body."""
    return JSONResponse({"detail": refusal.message}, status_code=refusal.status)


class Guard:
    """ASGI middleware: the checks of this module's docstring, then the app."""

    def __init__(
        self,
        app: ASGIApp,
        openai_paths: tuple[str, ...] = ("/v1/",),
    ) -> None:
        self.app = app
        self.openai_paths = openai_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _in_process(scope):
            return await self.app(scope, receive, send)
        try:
            settings = ServerSettings()
            await check_request(scope, settings)
            if scope["method"] in STATE_CHANGING:
                body = await read_json_body(scope, receive, settings.max_body_bytes)
                receive = replay(body, receive)
        except Refusal as refusal:
            render = (
                openai_error if scope["path"].startswith(self.openai_paths) else langgraph_error
            )
            return await render(refusal)(scope, receive, send)
        await self.app(scope, receive, send)


def _in_process(scope: Scope) -> bool:
    root_path = scope.get("root_path") or ""
    return root_path == "/noauth" or root_path.startswith("/noauth/")


async def check_request(scope: Scope, settings: ServerSettings) -> None:
    """Refuse (``Refusal``) what the route must never see: development-only routes, foreign
    hosts and origins, a missing or wrong key."""
    path = scope["path"]
    if path.startswith(DEVELOPMENT_ONLY):
        raise Refusal(404, f"{path}: not served by this deployment", "not_found")
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
    host = headers.get("host", "")
    allowed_hosts = settings.allowed_hosts or (LOOPBACK_HOSTS if settings.auth == "none" else ())
    if allowed_hosts and "*" not in allowed_hosts and _hostname(host) not in allowed_hosts:
        raise Refusal(
            403,
            f"Host {host!r} is not served here; its operator can list it in "
            "A2R_SERVER_ALLOWED_HOSTS",
            "host_not_allowed",
        )
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, host, settings.allowed_origins):
        raise Refusal(
            403,
            f"Origin {origin!r} may not call this server; its operator can list it in "
            "A2R_SERVER_ALLOWED_ORIGINS",
            "origin_not_allowed",
        )
    if path in HEALTH_PATHS and scope["method"] in ("GET", "HEAD"):
        return
    try:
        await authenticate({key.lower(): value for key, value in scope["headers"]})
    except Auth.exceptions.HTTPException as refused:
        message = f"{refused.detail}; OpenAI clients: api_key=KEY (sent as Authorization: Bearer)"
        raise Refusal(refused.status_code, message, "invalid_api_key") from None


async def authenticate(headers: dict[bytes, bytes]) -> Auth.types.MinimalUserDict:
    """The key check (LangGraph Server's auth handler, and the guard's): the deployment's
    ``A2R_SERVER_API_KEY`` in ``x-api-key`` or ``Authorization: Bearer``, compared in
    constant time."""
    settings = ServerSettings()
    if settings.auth == "none":
        return {"identity": "anonymous"}
    expected = settings.api_key.get_secret_value().encode() if settings.api_key else b""
    if not expected:  # unset or empty: an empty key would admit an empty header
        raise Auth.exceptions.HTTPException(
            status_code=401,
            detail="this server has no API key: its operator must set A2R_SERVER_API_KEY "
            "(or A2R_SERVER_AUTH=none on a server that only it can reach)",
        )
    given = headers.get(b"x-api-key", b"") or _bearer(headers.get(b"authorization", b""))
    if not hmac.compare_digest(given, expected):
        raise Auth.exceptions.HTTPException(
            status_code=401,
            detail="missing or wrong API key: send it as the x-api-key header "
            "(langgraph_sdk: get_client(api_key=...) or LANGGRAPH_API_KEY)",
        )
    return {"identity": "a2r-api-key"}


def _bearer(authorization: bytes) -> bytes:
    scheme, _, token = authorization.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else b""


def _hostname(host: str) -> str:
    """``host`` (a Host header) without its port."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same_origin(origin: str, host: str, allowed: list[str]) -> bool:
    if origin.rstrip("/") in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host


async def read_json_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request's body, refused (``Refusal``) unless it is empty or JSON, within the size
    limit and nested at most :data:`MAX_JSON_DEPTH` deep."""
    headers = dict(scope["headers"])
    content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
    declared = headers.get(b"content-length", b"").decode("latin-1")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = await read_body(receive, limit) or b""
    if not body.strip():
        return body
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise Refusal(
            415,
            f"content-type {content_type or 'missing'!r}: send the body as JSON with "
            "content-type: application/json",
            "unsupported_media_type",
        )
    # counting brackets runs at C speed: only a body with enough of them is walked in Python
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and json_depth(body) > MAX_JSON_DEPTH:
        raise Refusal(
            400, f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep", "invalid_json"
        )
    return body


def _too_large(limit: int) -> Refusal:
    return Refusal(
        413,
        f"the request body is over {limit} bytes (A2R_SERVER_MAX_BODY_BYTES)",
        "request_too_large",
    )


def json_depth(body: bytes) -> int:
    """How deep ``body``'s arrays and objects nest (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then what the client sends next (its
    disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class CancelOnDisconnect:
    """ASGI wrapper of one route: when the caller disconnects before the response is done, the
    route's work (a run, its model calls) is cancelled instead of paid for nobody."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = await read_body(receive)
        if body is None:  # gone before its body arrived
            return
        gone = asyncio.Event()

        async def wait_for_disconnect() -> Message:
            await gone.wait()
            return {"type": "http.disconnect"}

        work = asyncio.ensure_future(self.app(scope, replay(body, wait_for_disconnect), send))
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.set()
            for task in (work, watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not work.cancelled():
            work.result()  # the route's own error, for the server to answer


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The request's whole body, or None if the caller disconnected first; ``Refusal`` (413)
    past ``limit`` bytes."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if limit is not None and size > limit:
            raise _too_large(limit)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def cancel_on_disconnect(endpoint: Callable[..., Any]) -> ASGIApp:
    """A Starlette request handler as an ASGI app that :class:`CancelOnDisconnect` wraps."""
    from starlette.routing import request_response

    return CancelOnDisconnect(request_response(endpoint))
