"""LangGraph Server additions (langgraph.json ``http.app``): reject bad A2R runs with a 422.

Without this a run with a blank question or an out-of-range context is accepted and fails
later as a run error. The middleware validates the run request first, the way the graph
would: ``input`` against :class:`A2RInputModel`, and the assistant's context merged with the
run's context (the server's own shallow merge) against :class:`A2RContext`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from langgraph_sdk import get_client
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from a2r_graph.context import A2RContext
from a2r_graph.errors import describe_validation_error
from a2r_graph.state import A2RInputModel

GRAPH_ID = "a2r"
RUN_CREATE = re.compile(r"^/(?:threads/(?P<thread_id>[^/]+)/)?runs(?:/wait|/stream)?/?$")


class ValidateA2RRuns:
    """ASGI middleware: 422 for a run of the a2r graph whose input or context is invalid."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = RUN_CREATE.match(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        problem = await run_request_problem(body, route["thread_id"])
        if problem is not None:
            return await JSONResponse({"detail": problem}, status_code=422)(scope, receive, send)
        await self.app(scope, _replay(body, receive), send)


async def run_request_problem(body: bytes, thread_id: str | None = None) -> str | None:
    """What is wrong with this run request for the a2r graph, or None.

    ``input: null`` on a thread resumes the thread's unfinished run (``a2r_graph.threads``).
    """
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return None  # not ours to judge: the server answers malformed JSON itself
    if not isinstance(payload, dict):
        return None
    assistant = await _assistant(payload.get("assistant_id"))
    if assistant is None or assistant.get("graph_id") != GRAPH_ID:
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
    context = {**(assistant.get("context") or {}), **(payload.get("context") or {})}
    if unknown := sorted(set(context) - set(A2RContext.model_fields)):
        return f"context.{unknown[0]}: unknown field; the context fields are " + ", ".join(
            A2RContext.model_fields
        )
    try:
        A2RContext(**context)
    except ValidationError as error:
        return describe_validation_error(error, field_prefix="context.", env_prefix=None)
    return None


async def _has_unfinished_run(thread_id: str | None) -> bool:
    if thread_id is None:
        return False
    try:
        state = await get_client().threads.get_state(thread_id)
    except httpx.HTTPStatusError:  # unknown thread: the server itself answers 404
        return True
    return bool(state.get("next"))


async def _assistant(assistant_id: Any) -> dict | None:
    if assistant_id == GRAPH_ID:
        return {"graph_id": GRAPH_ID, "context": {}}
    if not isinstance(assistant_id, str):
        return None
    try:  # get_client() without a URL talks to this server in-process
        return dict(await get_client().assistants.get(assistant_id))
    except httpx.HTTPStatusError:  # unknown assistant: the server itself answers 404
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


app = Starlette()
app.add_middleware(ValidateA2RRuns)
