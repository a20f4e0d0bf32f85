"""The A2R MCP tool (a2r_graph.serving.mcp_tool) as the official ``mcp`` client sees it, in memory:
which presets are tools, what a call returns, and how invalid calls are answered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.shared.memory import create_connected_server_and_client_session

from a2r_graph.serving.mcp_tool import build_server
from a2r_graph.serving.registry import A2R
from a2r_graph.serving.runners import Preset, RunFailure
from tests.fakes import ScriptedRunner, fake_deployment

PRESETS = [
    Preset("a2r", "a2r-id", {}, None),
    Preset("wide one", "wide-id", {"n": 8, "min_paths": 6}, "Wide A2R for contest problems."),
    Preset("scratch", "scratch-id", {"n": 1}, None),  # no description: not a tool
]


@pytest.fixture(autouse=True)
def deployment(monkeypatch):
    return fake_deployment(monkeypatch)


@asynccontextmanager
async def session(runner: ScriptedRunner) -> AsyncIterator[ClientSession]:
    async with create_connected_server_and_client_session(build_server(runner)) as client:
        yield client


async def test_tools_are_the_default_and_the_described_presets():
    async with session(ScriptedRunner(PRESETS)) as client:
        tools = (await client.list_tools()).tools
    assert [tool.name for tool in tools] == ["a2r", "wide_one"]
    a2r, wide = tools
    assert a2r.description.startswith(A2R.description)
    assert "Returns the final answer" in a2r.description
    assert wide.description.startswith("Wide A2R for contest problems.")
    assert a2r.inputSchema["required"] == ["question"]
    assert set(a2r.inputSchema["properties"]) == {
        "question",
        "n",
        "synthesis_mode",
        "include_traces",
    }
    assert a2r.outputSchema["required"] == ["boxed_answer", "answer", "cost", "usage", "paths"]
    assert a2r.annotations.readOnlyHint and not a2r.annotations.destructiveHint


async def test_a_call_returns_the_answer_concisely_with_usage_as_structured_content():
    runner = ScriptedRunner(PRESETS)
    async with session(runner) as client:
        result = await client.call_tool("wide_one", {"question": " What is 2+3? ", "n": 6})
    assert not result.isError
    text = result.content[0].text
    assert text.startswith("Final answer: 5") and "Both agree. \\boxed{5}" in text
    assert "long trace" not in text and "trace" not in json.dumps(result.structuredContent)
    structured = result.structuredContent
    assert structured["boxed_answer"] == "5" and structured["cost"] == 0.003
    assert structured["usage"]["total"]["calls"] == 3
    assert structured["paths"] == [
        {"index": 0, "boxed": "5", "error": None},
        {"index": 1, "boxed": None, "error": "HTTP 500"},
    ]
    assert runner.runs == [("wide one", "What is 2+3?", {"n": 6, "min_paths": 6})]


@pytest.mark.parametrize("mode", ["vote", "vote_first"])
async def test_a_call_may_choose_how_the_attempts_become_one_answer(mode):
    """Catches: the tool's synthesis_mode argument dropped on the way to the run."""
    runner = ScriptedRunner(PRESETS)
    async with session(runner) as client:
        result = await client.call_tool("a2r", {"question": "2+3?", "synthesis_mode": mode})
    assert not result.isError
    assert runner.runs == [("a2r", "2+3?", {"synthesis_mode": mode})]


async def test_a_weighted_vote_without_the_deployments_confidence_is_refused_with_the_fix():
    runner = ScriptedRunner(PRESETS)
    async with session(runner) as client:
        arguments = {"question": "2+3?", "synthesis_mode": "weighted_vote"}
        result = await client.call_tool("a2r", arguments)
    assert result.isError and "A2R_CONFIDENCE__TOP_LOGPROBS=5" in result.content[0].text
    assert runner.runs == []


async def test_traces_come_only_when_asked_for():
    async with session(ScriptedRunner(PRESETS)) as client:
        result = await client.call_tool("a2r", {"question": "q", "include_traces": True})
    assert "long trace" in result.content[0].text and "thinking" in result.content[0].text
    assert result.structuredContent["paths"][0]["trace"] == "long trace"
    assert result.structuredContent["synthesis_trace"] == "thinking"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"question": "   "},
            "arguments.question: required: pass the complete, self-contained problem "
            "statement (it was blank)",
        ),
        ({}, "arguments.question: required"),
        (
            {"question": "q", "n": 0},
            "arguments.n: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"question": "q", "context": {"n": 2}},
            "arguments.context: unknown argument; the arguments are question, n, "
            "synthesis_mode, include_traces",
        ),
        ({"question": "q", "n": "many"}, "arguments.n: Input should be a valid integer"),
    ],
)
async def test_invalid_arguments_are_tool_errors_naming_the_field(arguments, message):
    runner = ScriptedRunner(PRESETS)
    async with session(runner) as client:
        result = await client.call_tool("a2r", arguments)
    assert result.isError and message in result.content[0].text
    assert runner.runs == []


async def test_options_the_preset_cannot_take_are_tool_errors():
    runner = ScriptedRunner(PRESETS)
    async with session(runner) as client:
        result = await client.call_tool("wide_one", {"question": "q", "n": 4})  # min_paths 6
    assert result.isError and "min_paths (6) must be <= n (4)" in result.content[0].text
    assert runner.runs == []


async def test_a_failed_run_is_a_tool_error_with_the_reason():
    failure = RunFailure.named("NotEnoughPathsError", "only 0 explorer path(s) succeeded")
    async with session(ScriptedRunner(PRESETS, failure)) as client:
        result = await client.call_tool("a2r", {"question": "q"})
    assert result.isError
    assert result.content[0].text == (
        "the a2r run failed (NotEnoughPathsError): only 0 explorer path(s) succeeded"
    )


async def test_unknown_tools_and_run_contexts_are_protocol_errors():
    runner = ScriptedRunner(PRESETS)
    async with session(runner) as client:
        with pytest.raises(McpError, match="Unknown tool: 'scratch'; tools: a2r, wide_one"):
            await client.call_tool("scratch", {"question": "q"})
        request = {"name": "a2r", "arguments": {"question": "q"}, "context": {"n": 2}}
        from mcp import types

        with pytest.raises(McpError, match="params.context: not supported") as refused:
            await client.send_request(
                types.ClientRequest(
                    types.CallToolRequest(params=types.CallToolRequestParams(**request))
                ),
                types.CallToolResult,
            )
        assert refused.value.error.code == types.INVALID_PARAMS
    assert runner.runs == []


@pytest.mark.parametrize(
    ("arguments", "field"), [({"n": "3"}, "arguments.n"), ({"include_traces": "yes"}, "include")]
)
async def test_arguments_are_read_as_their_published_schema_types(arguments, field):
    """Catches: "3" read as a path count and "yes" as true, despite the tool's inputSchema."""
    runner = ScriptedRunner(PRESETS)
    async with session(runner) as client:
        result = await client.call_tool("a2r", {"question": "What is 2+3?", **arguments})
    assert result.isError and field in result.content[0].text
    assert runner.runs == []
