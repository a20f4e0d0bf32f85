"""LangGraph Server additions (langgraph.json ``http.app``): reject bad runs with a 422;
serve the OpenAI-compatible API (``/v1/chat/completions``, ``/v1/models``: ``openai_api``)
and the A2R MCP tool (``/mcp``: ``mcp_tool``, in place of the server's generic one), both as
runs of this server and behind its auth (``enable_custom_route_auth``); and put the guard
(``a2r_graph.serving.guard``) in front of every route.

Without this a run with a blank question or an out-of-range context is accepted and fails
later as a run error. The middleware checks every request that creates a run or stores a
run's context (runs, batches, crons, assistants) of a strategy's graph the way the graph
will: ``input`` against :class:`A2RInputModel`, and the assistant's context merged with the
run's (the server's own shallow merge) with the strategy's ``resolve``. The graph resolves
every run's context again, so a route this does not know still cannot bypass it; it only
fails later, as a run error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx
from langgraph_sdk import get_client
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from a2r_graph.errors import ConfigurationError, describe_validation_error
from a2r_graph.serving import openai_api
from a2r_graph.serving.guard import Guard, read_body, replay
from a2r_graph.serving.mcp_tool import MCPEndpoint
from a2r_graph.serving.registry import Strategy, strategies
from a2r_graph.serving.runners import ServerRunner
from a2r_graph.state import A2RInputModel

RUN_CREATE = re.compile(
    r"^/(?:threads/(?P<thread_id>[^/]+)/)?runs(?P<kind>/wait|/stream|/batch|/crons)?/?$"
)
ASSISTANT = re.compile(r"^/assistants(?:/(?P<assistant_id>[^/]+))?/?$")
CRON = re.compile(r"^/runs/crons/(?P<cron_id>[^/]+)/?$")


class ValidateA2RRuns:
    """ASGI middleware: 422 for a run of a strategy's graph whose input or context is invalid."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        check = _check_for(scope) if scope["type"] == "http" else None
        if check is None:
            return await self.app(scope, receive, send)
        body = await read_body(receive)
        if body is None:  # the caller is gone
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = None  # not ours to judge: the server answers malformed JSON itself
        problem = None if payload is None else await check(payload)
        if problem is not None:
            return await JSONResponse({"detail": problem}, status_code=422)(scope, receive, send)
        await self.app(scope, replay(body, receive), send)


def _check_for(scope: Scope):
    """The check of this request's JSON body, or None for requests that create no run."""
    path, method = scope["path"], scope["method"]
    if method == "POST" and (route := RUN_CREATE.match(path)):
        thread_id = route["thread_id"]
        if route["kind"] == "/batch" and thread_id is None:
            return _batch_problem
        if route["kind"] == "/batch":
            return None
        return lambda payload: run_request_problem(payload, thread_id)
    if (route := ASSISTANT.match(path)) and (
        (method == "POST" and route["assistant_id"] is None)
        or (method == "PATCH" and route["assistant_id"] is not None)
    ):
        return lambda payload: assistant_problem(payload, route["assistant_id"])
    if method == "PATCH" and (route := CRON.match(path)):
        return lambda payload: cron_patch_problem(payload, route["cron_id"])
    return None


async def _batch_problem(payload: Any) -> str | None:
    if not isinstance(payload, list):
        return None  # the server answers a malformed batch itself
    for i, run in enumerate(payload):
        if (problem := await run_request_problem(run)) is not None:
            return f"run {i} of the batch: {problem}"
    return None


async def run_request_problem(payload: Any, thread_id: str | None = None) -> str | None:
    """What is wrong with this run request for a strategy's graph, or None.

    ``input: null`` on a thread resumes the thread's unfinished run (``a2r_graph.threads``).
    """
    if not isinstance(payload, dict):
        return None  # not a run of ours: the server answers it
    assistant = await _assistant(payload.get("assistant_id"))
    strategy = strategies().get((assistant or {}).get("graph_id"))  # type: ignore[arg-type]
    if assistant is None or strategy is None:
        return None
    if payload.get("input") is None and payload.get("command") is None:
        if not await _has_unfinished_run(thread_id):
            return (
                'input: required: pass {"question": "..."} (input null resumes a '
                "thread's unfinished run, and "
                + (f"thread {thread_id} has none)" if thread_id else "this run has no thread)")
            )
    elif payload.get("input") is not None:
        try:
            A2RInputModel.model_validate(payload.get("input"))
        except ValidationError as error:
            return describe_validation_error(error, field_prefix="input.", env_prefix=None)
    context = run_context_of(payload, strategy)
    if isinstance(context, str):
        return context
    return context_problem({**(assistant.get("context") or {}), **context}, strategy)


def run_context_of(payload: dict, strategy: Strategy) -> dict | str:
    """The context a run request passes: ``context``, or LangGraph's older ``configurable``
    (which the server copies into the context), or what is wrong with it."""
    context = payload.get("context")
    if context is not None and not isinstance(context, dict):
        return f"context: must be an object of context fields, got {type(context).__name__}"
    if context:
        return context
    config = payload.get("config")
    configurable = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(configurable, dict):
        return {}
    # The server keeps only the schema's fields of a ``configurable``; the rest is its own.
    fields = strategy.options.model_fields
    return {key: value for key, value in configurable.items() if key in fields}


def context_problem(context: dict, strategy: Strategy) -> str | None:
    try:
        strategy.resolve(context)
    except ConfigurationError as error:
        return str(error)
    return None


async def assistant_problem(payload: Any, assistant_id: str | None) -> str | None:
    """What is wrong with an assistant's context (a preset every run of it starts from)."""
    if not isinstance(payload, dict) or "context" not in payload:
        return None
    graph_id = payload.get("graph_id")
    if assistant_id is not None:
        graph_id = (await _assistant(assistant_id) or {}).get("graph_id")
    strategy = strategies().get(graph_id)  # type: ignore[arg-type]
    if strategy is None:
        return None
    context = run_context_of({"context": payload["context"]}, strategy)
    return context if isinstance(context, str) else context_problem(context, strategy)


async def cron_patch_problem(payload: Any, cron_id: str) -> str | None:
    """What is wrong with the run a cron of a strategy's graph would start once patched: the
    patch's input, context and config over the cron's own."""
    if not isinstance(payload, dict):
        return None
    try:
        cron = await get_client().http.get(f"/runs/crons/{cron_id}")
    except httpx.HTTPStatusError:  # unknown cron: the server itself answers 404
        return None
    stored = cron.get("payload") or {}
    run = {"assistant_id": cron.get("assistant_id")}
    for key in ("input", "context", "config"):
        run[key] = payload[key] if key in payload else stored.get(key)
    if run["input"] is None:
        return 'input: required: a cron runs {"question": "..."} each time it fires'
    return await run_request_problem(run, cron.get("thread_id"))


async def _has_unfinished_run(thread_id: str | None) -> bool:
    if thread_id is None:
        return False
    try:
        state = await get_client().threads.get_state(thread_id)
    except httpx.HTTPStatusError:  # unknown thread: the server itself answers 404
        return True
    return bool(state.get("next"))


async def _assistant(assistant_id: Any) -> dict | None:
    if not isinstance(assistant_id, str) or not assistant_id or "/" in assistant_id:
        return None  # no assistant's id (not a path to another route): the server answers it
    if assistant_id in strategies():  # a graph id names the graph's own assistant
        return {"graph_id": assistant_id, "context": {}}
    try:  # get_client() without a URL talks to this server in-process
        found = await get_client().assistants.get(assistant_id)
    except httpx.HTTPStatusError:  # unknown assistant: the server itself answers 404
        return None
    return dict(found) if isinstance(found, Mapping) else None


# MCP's tools/call is checked by the tool itself (mcp_tool), with the same functions.
_mcp = MCPEndpoint(ServerRunner())
app = Starlette(routes=[*openai_api.routes(ServerRunner()), _mcp.route()], lifespan=_mcp.lifespan)
app.add_middleware(ValidateA2RRuns)
app.add_middleware(Guard)  # outermost: every route of the server, LangGraph's own included
