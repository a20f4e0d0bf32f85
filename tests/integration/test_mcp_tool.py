"""The A2R MCP tool as agents meet it: the official ``mcp`` client and an agent built with
LangChain's MCP adapters, against a real ``langgraph dev`` (its ``/mcp``, runs of the server's
own, presets as assistants) and a real ``a2r serve``, over the loopback model server; and once
against the real vLLM server behind ``langgraph dev``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from mcp.shared.exceptions import McpError

from a2r_graph.serving.registry import A2R, BUILT_IN
from examples.agent import build_agent
from tests.fakes import ToolCallingFake
from tests.integration.a2r_serve import a2r_serve, loopback_env
from tests.integration.conftest import AUTH, SERVER_KEY, langgraph_dev
from tests.loopback import LoopbackServer
from tests.mcp_calls import mcp_session

pytestmark = pytest.mark.integration
QUESTION = "What is 17 + 25?"
ANSWER = "42"


@pytest.fixture(scope="module")
def deployments(tmp_path_factory) -> Iterator[dict]:
    logs = tmp_path_factory.mktemp("mcp-tool")
    with LoopbackServer(models=("explore", "synth")) as loop:
        env = loopback_env(loop)
        with langgraph_dev(env, logs / "langgraph-dev.log") as (langgraph_url, _):
            with httpx.Client(base_url=langgraph_url, headers=AUTH, timeout=60) as http:
                for assistant in (
                    {"name": "wide", "description": "A2R with 3 attempts.", "context": {"n": 3}},
                    {"name": "scratch", "context": {"n": 1}},  # no description: not a tool
                ):
                    created = http.post("/assistants", json={"graph_id": "a2r", **assistant})
                    assert created.status_code == 200, created.text
            with a2r_serve(env, logs / "a2r-serve.log") as serve_url:
                yield {"langgraph dev": langgraph_url, "a2r serve": serve_url, "loop": loop}


@pytest.fixture(params=["langgraph dev", "a2r serve"])
def server(request, deployments) -> dict:
    return {
        "name": request.param,
        "mcp": deployments[request.param] + "/mcp",
        "loop": deployments["loop"],
    }


async def test_the_mcp_client_lists_the_tools_with_descriptions(server):
    async with mcp_session(server["mcp"]) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    built_in = [strategy.name for strategy in BUILT_IN]
    expected = [*built_in, "wide"] if server["name"] == "langgraph dev" else built_in
    assert list(tools) == expected  # not every assistant: "scratch" has no description
    a2r = tools["a2r"]
    assert (
        a2r.description.startswith(A2R.description)
        and "Returns the final answer" in a2r.description
    )
    assert a2r.inputSchema["required"] == ["question"]
    assert a2r.outputSchema["properties"]["usage"]
    if "wide" in tools:
        assert tools["wide"].description.startswith("A2R with 3 attempts.")


async def test_a_call_returns_the_concise_result(server):
    async with mcp_session(server["mcp"]) as session:
        result = await session.call_tool("a2r", {"question": QUESTION, "n": 2})
        traced = await session.call_tool(
            "a2r", {"question": QUESTION, "n": 2, "include_traces": True}
        )
    assert not result.isError
    text = result.content[0].text
    assert text.startswith(f"Final answer: {ANSWER}") and text.endswith(f"\\boxed{{{ANSWER}}}")
    assert "step step" not in text and len(text) < 400  # no traces: a short read for the agent
    structured = result.structuredContent
    assert structured["boxed_answer"] == ANSWER
    assert [path["boxed"] for path in structured["paths"]] == [ANSWER, ANSWER]
    assert structured["usage"]["total"]["calls"] == 3 and structured["cost"] > 0
    assert "trace" not in json.dumps(structured)
    assert "step step" in traced.content[0].text
    assert all(path["trace"].startswith("step") for path in traced.structuredContent["paths"])


async def test_an_assistant_is_a_tool_with_its_preset(deployments):
    async with mcp_session(deployments["langgraph dev"] + "/mcp") as session:
        result = await session.call_tool("wide", {"question": QUESTION})
    assert not result.isError and len(result.structuredContent["paths"]) == 3


async def test_a_blank_question_is_a_clear_tool_error(server):
    before = server["loop"].stats()
    async with mcp_session(server["mcp"]) as session:
        blank = await session.call_tool("a2r", {"question": "   "})
        too_many = await session.call_tool("a2r", {"question": QUESTION, "n": 65})
        with pytest.raises(McpError, match="Unknown tool: 'nope'"):
            await session.call_tool("nope", {"question": QUESTION})
    assert blank.isError
    assert (
        "arguments.question: required: pass the complete, self-contained problem"
        in blank.content[0].text
    )
    assert (
        too_many.isError
        and "arguments.n: Input should be less than or equal to 64" in too_many.content[0].text
    )
    assert server["loop"].stats() == before  # nothing ran


async def test_a_failed_run_is_a_tool_error_with_the_reason(server):
    server["loop"].inject_fault(model="synth", status=500, count=-1)
    try:
        async with mcp_session(server["mcp"]) as session:
            result = await session.call_tool("a2r", {"question": QUESTION})
    finally:
        server["loop"].clear_faults()
    assert result.isError
    assert (
        "EndpointUnavailableError" in result.content[0].text
        and "HTTP 500" in result.content[0].text
    )


async def test_the_tool_needs_the_servers_key(server):
    async with httpx.AsyncClient(timeout=30) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"x-api-key": "wrong"}):
            refused = await http.post(
                server["mcp"],
                headers={**headers, "accept": "application/json, text/event-stream"},
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            )
            assert refused.status_code == 401


async def test_an_agent_calls_it_through_langchains_mcp_adapters(server):
    client = MultiServerMCPClient(
        {
            "a2r": {
                "url": server["mcp"],
                "transport": "streamable_http",
                "headers": {"x-api-key": SERVER_KEY},
            }
        }
    )
    tools = await client.get_tools()
    assert next(tool.name for tool in tools) == "a2r"
    a2r = next(tool for tool in tools if tool.name == "a2r")
    call = {"name": "a2r", "args": {"question": QUESTION, "n": 2}, "id": "call-1"}
    blank = {"name": "a2r", "args": {"question": " "}, "id": "call-0"}
    agent_model = ToolCallingFake(
        messages=iter(
            [
                AIMessage("", tool_calls=[blank]),  # a mistake the model reads and corrects
                AIMessage("", tool_calls=[call]),
                AIMessage(f"The answer is {ANSWER}."),
            ]
        )
    )
    result = await build_agent(agent_model, [a2r]).ainvoke({"messages": [("user", QUESTION)]})
    replies = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert "arguments.question" in str(replies[0].content)
    assert str(replies[1].content).count(f"Final answer: {ANSWER}") == 1
    assert replies[1].artifact["structured_content"]["boxed_answer"] == ANSWER
    assert result["messages"][-1].content == f"The answer is {ANSWER}."


async def test_the_tool_over_a_real_vllm_server(langgraph_server):
    async with mcp_session(f"{langgraph_server}/mcp", {"x-api-key": SERVER_KEY}) as session:
        result = await session.call_tool("a2r", {"question": QUESTION, "n": 2})
    assert not result.isError, result.content
    assert result.content[0].text.startswith("Final answer: ")
    usage = result.structuredContent["usage"]
    assert usage["total"]["calls"] == 3 and usage["total"]["input_tokens"] > 0
    assert result.structuredContent["cost"] > 0


async def test_the_tool_through_a2r_serve_over_a_real_vllm_server(serve_over_vllm, vllm_server):
    """MCP on ``a2r serve`` over the real model server: the usage it reports is what vLLM
    counted."""
    before = vllm_server.token_counters()
    async with mcp_session(f"{serve_over_vllm}/mcp") as session:
        result = await session.call_tool("a2r", {"question": QUESTION, "n": 2})
    after = vllm_server.token_counters()
    assert not result.isError, result.content
    total = result.structuredContent["usage"]["total"]
    assert total["calls"] == 3 and result.structuredContent["cost"] > 0
    assert total["input_tokens"] == (
        after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]
    )
    assert total["output_tokens"] == (
        after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    )
