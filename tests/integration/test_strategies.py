"""A second strategy (``tests.strategies``: echo), registered by a deployment the documented
way (its graph in ``langgraph.json``, its ``Strategy`` in ``A2R_STRATEGIES``), reached through
every door of a real LangGraph Server (``langgraph dev``): its graph id, the OpenAI endpoint's
``model``, an MCP tool, and ``RemoteGraph`` as a LangChain tool. The echo graph calls no model;
the doors and the server are real. (``a2r serve``, ``a2r ask --graph``, ``as_tool("echo")``:
tests/unit/serving/test_registry.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client

from a2r_graph.serving.registry import BUILT_IN
from a2r_graph.serving.tool import as_tool
from tests.integration.conftest import AUTH, SERVER_KEY, langgraph_dev
from tests.strategies import ECHO, expected_answer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
QUESTION = "how many words are here"
MCP_HEADERS = {**AUTH, "accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """``langgraph dev`` serving the repository's configuration plus the echo graph."""
    folder = tmp_path_factory.mktemp("strategies")
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["dependencies"] = [str(ROOT)]
    config["graphs"]["echo"] = "tests.strategies:graph"
    (folder / "langgraph.json").write_text(json.dumps(config))
    env = {"A2R_STRATEGIES": "tests.strategies:ECHO", "PYTHONPATH": str(ROOT)}
    with langgraph_dev(env, folder / "langgraph-dev.log", str(folder / "langgraph.json")) as up:
        yield up[0]


async def test_langgraph_server_runs_the_second_graph_and_checks_its_context(server):
    """Catches: the server's run checks (webapp) knowing only the a2r graph: a bad context
    of another graph would be accepted, or a good one refused as A2R's."""
    client = get_client(url=server)
    result = await client.runs.wait(
        None, "echo", input={"question": QUESTION}, context={"repeat": 2}
    )
    assert result["answer"] == expected_answer(QUESTION, 2) and result["words"] == 10
    http = httpx.Client(base_url=server, headers=AUTH, timeout=30)
    run = {"assistant_id": "echo", "input": {"question": QUESTION}}
    for context, field in (({"repeat": 9}, "context.repeat"), ({"n": 4}, "context.n")):
        refused = http.post("/runs/wait", json={**run, "context": context})
        assert refused.status_code == 422 and field in refused.json()["detail"]
    preset = http.post("/assistants", json={"graph_id": "echo", "context": {"repeat": 0}})
    assert preset.status_code == 422


def test_the_openai_endpoint_serves_the_second_graph_by_model_name(server):
    """Catches: ``/v1/models`` listing only the a2r graph's assistants, or a ``model`` that
    runs the a2r graph whatever it names."""
    http = httpx.Client(base_url=server, headers=AUTH, timeout=60)
    models = [model["id"] for model in http.get("/v1/models").json()["data"]]
    assert models[:4] == [*(strategy.name for strategy in BUILT_IN), "echo"]
    messages = [{"role": "user", "content": QUESTION}]
    reply = http.post("/v1/chat/completions", json={"model": "echo:repeat=3", "messages": messages})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == expected_answer(QUESTION, 3)
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "echo", "messages": messages, "stream": True},
    ) as streamed:
        chunks = [json.loads(line[6:]) for line in streamed.iter_lines() if line[:7] == "data: {"]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text == expected_answer(QUESTION)


def test_mcp_serves_the_second_graph_as_a_tool_with_its_own_arguments(server):
    """Catches: MCP tools listed from the a2r graph's assistants only, or described with
    A2R's arguments."""
    http = httpx.Client(base_url=server, headers=MCP_HEADERS, timeout=60)

    def rpc(method: str, params: dict) -> dict:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        return http.post("/mcp", json=body).json()["result"]

    tools = {tool["name"]: tool for tool in rpc("tools/list", {})["tools"]}
    assert {"a2r", "echo"} <= set(tools)
    assert "repeat" in tools["echo"]["inputSchema"]["properties"]
    arguments = {"question": QUESTION, "repeat": 2}
    called = rpc("tools/call", {"name": "echo", "arguments": arguments})
    assert not called["isError"] and called["structuredContent"]["boxed_answer"] == "10"


async def test_remote_graph_of_the_second_strategy_as_a_tool(server):
    """Catches: ``as_tool`` over a remote graph that passes A2R's arguments to any graph."""
    remote = RemoteGraph("echo", url=server, api_key=SERVER_KEY)
    tool = as_tool(remote, strategy=ECHO)  # a client of the server: no A2R_STRATEGIES here
    content = await tool.ainvoke({"question": QUESTION, "repeat": 2})
    assert content.startswith("Final answer: 10")
