"""The strategies as MCP tools (Model Context Protocol, streamable HTTP at ``/mcp``), with the
official ``mcp`` SDK's low-level server.

It replaces LangGraph Server's generic ``/mcp`` (``langgraph.json``: ``disable_mcp``), which
lists every assistant as "Tool based on the ... assistant" and returns the run's whole state
as a Python ``repr``. Here:

- ``tools/list``: a tool per strategy (``a2r`` first: the server's own assistants), plus each
  assistant of a strategy's graph that has a description (the assistants meant as tools),
  each described for an agent: when to call it, what it returns, what it costs.
- ``tools/call``: the strategy's arguments (A2R: ``question``, optional ``n``) and
  ``include_traces``. The text is
  the final answer and the synthesizer's answer; ``structuredContent`` holds the boxed
  answer, each path's answer, usage and cost (schema: ``outputSchema``); traces only with
  ``include_traces``.
- Invalid arguments (a blank question, ``n`` out of range, an unknown argument, options the
  preset cannot take) are answered as a tool error naming the field (``isError``: the
  calling model reads it and can correct itself, as MCP's 2025-11-25 revision asks), with
  the same checks as the server's HTTP routes. An unknown tool, or LangGraph's non-standard
  ``params.context``, is a JSON-RPC "invalid params" error (-32602).

Stateless, JSON responses: any worker answers any request, no session to keep.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import McpError
from pydantic import BaseModel, Field, ValidationError, create_model
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from a2r_graph.serving.guard import CancelOnDisconnect
from a2r_graph.serving.registry import DEFAULT, Strategy, strategy
from a2r_graph.serving.render import summary, tool_text
from a2r_graph.serving.runners import Preset, RunFailure, Runner, merged, request_problem, tool_name

RETURNS = (
    "Returns the final answer (the value of the last \\boxed{}) and the synthesizer's worked "
    "answer as text; structured content adds each parallel attempt's answer, token usage and "
    "cost. Takes from seconds to minutes. Set include_traces only when you need every "
    "attempt's full reasoning (thousands of tokens)."
)
INSTRUCTIONS = (
    "A2R parallel reasoning: several solvers attempt a problem independently and a stronger "
    "model synthesizes their answers. Call a tool with the complete, self-contained problem."
)


@cache
def arguments_of(chosen: Strategy) -> type[BaseModel]:
    """What a call of one of ``chosen``'s tools may pass: its arguments, and the traces."""
    return create_model(
        f"{chosen.arguments.__name__}Call",
        __base__=chosen.arguments,
        include_traces=(
            bool,
            Field(False, description="Also return every attempt's full reasoning trace (long)."),
        ),
    )


class StageUsage(BaseModel):
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float


class PathResult(BaseModel):
    index: int
    boxed: str | None = Field(description="This attempt's final answer (its last \\boxed{}).")
    error: str | None = Field(description="Why this attempt failed; null if it answered.")
    trace: str | None = Field(None, description="Its reasoning (only with include_traces).")


class AggregationResult(BaseModel):
    by: str = Field(
        description="What gave the answer: synthesizer, selector, vote, weighted_vote or "
        "shortcut (the last three without a synthesizer call)."
    )
    why: str


class ToolResult(BaseModel):
    """The structured content of a tool call."""

    boxed_answer: str | None = Field(description="The final answer: the synthesizer's \\boxed{}.")
    answer: str = Field(description="The synthesizer's answer, ending in the final answer.")
    cost: float = Field(description="Cost of every model call (deployment prices per 1M tokens).")
    usage: dict[str, StageUsage] = Field(
        description="Calls, tokens and cost per stage: explore, synthesize, total."
    )
    paths: list[PathResult]
    aggregation: AggregationResult | None = Field(
        None, description="Which aggregator answered, and why (synthesis_mode)."
    )
    synthesis_trace: str | None = Field(
        None, description="The synthesizer's reasoning (only with include_traces)."
    )


OUTPUT_SCHEMA = ToolResult.model_json_schema()
ANNOTATIONS = types.ToolAnnotations(
    readOnlyHint=True, destructiveHint=False, idempotentHint=False, openWorldHint=False
)


async def tools_of(runner: Runner) -> dict[str, Preset]:
    """The tools: the default preset, and the presets that carry a description."""
    tools: dict[str, Preset] = {}
    for i, preset in enumerate(await runner.presets()):
        name = tool_name(preset.name)
        if name and name not in tools and (i == 0 or preset.description):
            tools[name] = preset
    return tools


def tool_of(name: str, preset: Preset) -> types.Tool:
    chosen = strategy(preset.graph)
    return types.Tool(
        name=name,
        title=f"{chosen.name} reasoning ({preset.name})",
        description=f"{(preset.description or chosen.description).strip()}\n\n{RETURNS}",
        inputSchema=arguments_of(chosen).model_json_schema(),
        outputSchema=OUTPUT_SCHEMA,
        annotations=ANNOTATIONS,
    )


def describe_arguments(error: ValidationError, tool: str, known: type[BaseModel]) -> str:
    """One line per invalid argument, naming it and saying what to pass."""
    lines = [f"invalid arguments for {tool}:"]
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "arguments"
        if name == "question" and problem["type"] in ("string_too_short", "missing"):
            what = "required: pass the complete, self-contained problem statement (it was blank)"
            if problem["type"] == "missing":
                what = "required: pass the complete, self-contained problem statement"
        elif problem["type"] == "extra_forbidden":
            what = f"unknown argument; the arguments are {', '.join(known.model_fields)}"
        else:
            what = f"{problem['msg']} (got {problem['input']!r})"
        lines.append(f"  arguments.{name}: {what}")
    return "\n".join(lines)


def _tool_error(message: str) -> types.ServerResult:
    return types.ServerResult(
        types.CallToolResult(content=[types.TextContent(type="text", text=message)], isError=True)
    )


def _invalid_params(message: str) -> McpError:
    return McpError(types.ErrorData(code=types.INVALID_PARAMS, message=message))


def build_server(runner: Runner) -> Server:
    """The MCP server: the A2R tools of ``runner``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        own_version = version("a2r-graph")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        own_version = None
    server: Server = Server("a2r-graph", version=own_version, instructions=INSTRUCTIONS)

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [tool_of(name, preset) for name, preset in (await tools_of(runner)).items()]

    async def call_tool(request: types.CallToolRequest) -> types.ServerResult:
        params = request.params
        tools = await tools_of(runner)
        preset = tools.get(params.name)
        known = arguments_of(strategy(preset.graph if preset else DEFAULT))
        if "context" in (params.model_extra or {}):
            raise _invalid_params(
                "params.context: not supported: a call passes its options as arguments "
                f"({', '.join(known.model_fields)}); the rest is the server's"
            )
        if preset is None:
            raise _invalid_params(f"Unknown tool: {params.name!r}; tools: {', '.join(tools)}")
        try:
            arguments = known.model_validate(params.arguments or {}, strict=True)
        except ValidationError as error:
            return _tool_error(describe_arguments(error, params.name, known))
        chosen = strategy(preset.graph)
        context = merged(preset.context, chosen.options_of(arguments))
        if problem := request_problem(arguments.question, context, preset.graph):  # type: ignore[attr-defined]
            return _tool_error(f"invalid call of {params.name}: {problem}")
        try:
            output = await runner.invoke(preset, arguments.question, context)  # type: ignore[attr-defined]
        except RunFailure as failure:
            return _tool_error(f"the {chosen.name} run failed ({failure.error}): {failure.message}")
        traces = arguments.include_traces  # type: ignore[attr-defined]
        text, structured = tool_text(output, traces), summary(output, traces)
        return types.ServerResult(
            types.CallToolResult(
                content=[types.TextContent(type="text", text=text)],
                structuredContent=structured,
                isError=False,
            )
        )

    # Registered directly, not with @server.call_tool(): that decorator answers every
    # exception as a tool error, and an unknown tool is a protocol error.
    server.request_handlers[types.CallToolRequest] = call_tool
    return server


class MCPEndpoint:
    """The ASGI endpoint of ``/mcp``; ``lifespan`` must run around the app's life."""

    def __init__(self, runner: Runner) -> None:
        self.manager = StreamableHTTPSessionManager(
            app=build_server(runner), json_response=True, stateless=True
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    def route(self, path: str = "/mcp") -> Route:
        return Route(path, CancelOnDisconnect(self), methods=["GET", "POST", "DELETE"])
