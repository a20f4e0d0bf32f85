"""An agent with a real model (the embedded Qwen2.5-Coder-0.5B with vLLM's tool calling) calling
A2R the three ways an agent reaches it: the graph in-process (``as_tool``), a LangGraph Server
through ``RemoteGraph``, and MCP through ``langchain-mcp-adapters``. One vLLM server plays the
agent's model and both A2R stages, so its own request counter tells the agent's turns and
A2R's N explorer and one synthesizer request apart.

A 0.5B model does not always choose a tool: the first turn is forced to call A2R (a named,
strict ``tool_choice``: vLLM constrains the arguments to the tool's schema), the later turns
choose freely. Nor does it reliably repeat the answer it was given: the tool is made with
``return_direct`` so that the agent ends with A2R's answer (asserted); once without it, the
model's own final answer is measured (printed) and only the mechanics asserted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from langgraph.pregel.remote import RemoteGraph

from a2r_graph.serving.tool import as_tool
from examples.embedded_agent import SYSTEM, TOOL_CALLING, build
from servers.engines import EmbeddedVLLM
from tests.integration.conftest import SERVER_KEY, Server, langgraph_dev

pytestmark = pytest.mark.integration
N = 2
QUESTION = (
    "A bakery sells muffins for 3 dollars each and cookies for 2 dollars each. Maria buys 4 "
    "muffins and some cookies and pays 20 dollars in total. How many cookies did she buy?"
)
STAGE = {"max_tokens": 256, "temperature": 0.6}


@pytest.fixture(scope="module")
def agent_server() -> Iterator[tuple[EmbeddedVLLM, Server]]:
    with EmbeddedVLLM("qwen2.5-coder-0.5b", extra_args=TOOL_CALLING) as server:
        yield server, Server(server.base_url.rstrip("/"), server.model_name)


@pytest.fixture(scope="module")
def a2r_env(agent_server) -> dict[str, str]:
    server, _ = agent_server
    return server.a2r_env() | {
        "A2R_N": str(N),
        "A2R_SYNTHESIS_MODE": "synthesize",
        **{f"A2R_{stage}__MAX_TOKENS": "256" for stage in ("EXPLORER", "SYNTHESIZER")},
    }


@pytest.fixture(scope="module")
def a2r_server(a2r_env, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("agent") / "langgraph-dev.log"
    with langgraph_dev(a2r_env, log) as (url, _):
        yield url


async def run_agent(server: EmbeddedVLLM, counted: Server, tool: Any) -> dict[str, Any]:
    """The agent on ``QUESTION`` with ``tool``; the messages, and vLLM's requests during it."""
    before = counted.requests_served()
    result = await build(server, tool, force_tool=True).ainvoke(
        {"messages": [("system", SYSTEM), ("user", QUESTION)]}
    )
    served = counted.requests_served() - before
    messages = result["messages"]
    for message in messages:
        message.pretty_print()
    return {"messages": messages, "served": served}


def check(run: dict[str, Any], tool_name: str, boxed_of: Any, direct: bool = True) -> None:
    """The forced call reached A2R with a question; the server saw the agent's turns plus N
    explorers and one synthesizer; the agent's final answer is the tool's (``direct``), or
    the tool's answer went back to the model, which answered."""
    messages = run["messages"]
    turns = [m for m in messages if isinstance(m, AIMessage)]
    [call] = turns[0].tool_calls
    assert call["name"] == tool_name and call["args"]["question"].strip()
    replies = [m for m in messages if isinstance(m, ToolMessage)]
    assert replies and replies[0].status == "success", replies
    assert run["served"] == len(turns) + N + 1, (run["served"], len(turns))
    boxed = boxed_of(replies[0])  # None when the synthesizer boxed nothing (a 0.5B may not)
    assert f"Final answer: {boxed or '(no boxed answer)'}" in str(replies[0].content)
    final = str(messages[-1].content)
    carried = bool(boxed) and re.search(rf"(?<![\d.]){re.escape(boxed)}(?![\d.])", final)
    print(f"\nquestion passed: {call['args']['question']!r}; A2R: {boxed!r}; final: {final!r}; "
          f"carries the tool's answer: {bool(carried)}")  # fmt: skip
    if direct:  # the agent's final answer is the tool's: no turn after it
        assert messages[-1] is replies[0] and len(turns) == 1
    else:
        assert len(turns) >= 2 and messages[-1] is turns[-1]  # the model answered after it


@pytest.mark.parametrize("direct", [True, False], ids=["return-direct", "model-answers"])
async def test_an_agent_calls_a2r_in_process(agent_server, a2r_env, monkeypatch, direct):
    server, counted = agent_server
    for key, value in a2r_env.items():
        monkeypatch.setenv(key, value)
    tool = as_tool(context={"explorer": STAGE, "synthesizer": STAGE}, return_direct=direct)
    run = await run_agent(server, counted, tool)
    check(run, "a2r_reason", lambda reply: reply.artifact["boxed_answer"], direct)
    assert [m for m in run["messages"] if isinstance(m, ToolMessage)][0].artifact["usage"]["total"][
        "calls"
    ] == N + 1


async def test_an_agent_calls_a2r_on_langgraph_server_through_remote_graph(
    agent_server, a2r_server
):
    server, counted = agent_server
    tool = as_tool(RemoteGraph("a2r", url=a2r_server, api_key=SERVER_KEY), return_direct=True)
    run = await run_agent(server, counted, tool)
    check(run, "a2r_reason", lambda reply: reply.artifact["boxed_answer"])


async def test_an_agent_calls_a2r_over_mcp(agent_server, a2r_server):
    server, counted = agent_server
    client = MultiServerMCPClient(
        {
            "a2r": {
                "url": f"{a2r_server}/mcp",
                "transport": "streamable_http",
                "headers": {"x-api-key": SERVER_KEY},
            }
        }
    )
    tool = next(tool for tool in await client.get_tools() if tool.name == "a2r")
    tool.return_direct = True
    run = await run_agent(server, counted, tool)
    check(run, "a2r", lambda reply: reply.artifact["structured_content"]["boxed_answer"])
