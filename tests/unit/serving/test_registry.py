"""The strategies' registry (a2r_graph.serving.registry): a second strategy that a deployment
registers (``tests.strategies``: echo) is served by every door of ``a2r serve``, the command
line and ``as_tool``, in this process, like A2R; bad registrations are refused by name.
The same strategy through a real LangGraph Server: tests/integration/test_strategies.py."""

from __future__ import annotations

import json

import pytest
from mcp.shared.memory import create_connected_server_and_client_session
from starlette.testclient import TestClient

from a2r_graph.errors import ConfigurationError
from a2r_graph.serving.cli import main
from a2r_graph.serving.mcp_tool import build_server
from a2r_graph.serving.registry import BUILT_IN, strategies, strategy
from a2r_graph.serving.runners import LocalRunner
from a2r_graph.serving.serve import build_app
from a2r_graph.serving.tool import as_tool
from tests.fakes import SERVER_KEY, fake_deployment, openai_chat
from tests.strategies import ECHO, expected_answer

QUESTION = "how many words are here"
BUILT_IN_NAMES = [strategy.name for strategy in BUILT_IN]
KEY = SERVER_KEY


@pytest.fixture(autouse=True)
def deployment(monkeypatch):
    fake_deployment(monkeypatch)
    monkeypatch.setenv("A2R_STRATEGIES", "tests.strategies:ECHO")
    monkeypatch.setenv("A2R_SERVER_API_KEY", "sk-test")
    return monkeypatch


def chat(http: TestClient, model: str, **body) -> dict:
    return openai_chat(http, model, QUESTION, **body)


def test_the_openai_endpoint_serves_a_registered_strategy_by_its_name():
    """Catches: a door that runs the A2R graph whatever ``model`` names, drops the strategy's
    options, or checks them against A2R's."""
    with TestClient(build_app(LocalRunner(), mcp=False), base_url="http://127.0.0.1:8100") as http:
        models = http.get("/v1/models", headers=KEY).json()["data"]
        assert [model["id"] for model in models] == [*BUILT_IN_NAMES, "echo"]
        once = chat(http, "echo")
        assert once["choices"][0]["message"]["content"] == expected_answer(QUESTION)
        twice = chat(http, "echo:repeat=2")
        assert twice["choices"][0]["message"]["content"] == expected_answer(QUESTION, 2)
        assert twice["a2r"]["boxed_answer"] == "10"
        refused = chat(http, "echo:repeat=9")
        assert refused["status"] == 400 and "repeat" in refused["error"]["message"]
        a2r_option = chat(http, "echo:n=4")
        assert a2r_option["status"] == 400 and "n" in a2r_option["error"]["message"]


def test_the_openai_endpoint_streams_a_registered_strategys_answer_node():
    """Catches: streaming that listens to A2R's synthesizer node for every graph (the echo
    graph's tokens would never reach the caller)."""
    with TestClient(build_app(LocalRunner(), mcp=False), base_url="http://127.0.0.1:8100") as http:
        messages = [{"role": "user", "content": QUESTION}]
        with http.stream(
            "POST",
            "/v1/chat/completions",
            headers=KEY,
            json={"model": "echo", "messages": messages, "stream": True},
        ) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    deltas = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in lines]
    assert len([d for d in deltas if d]) > 1  # token by token, not one piece at the end
    assert "".join(d for d in deltas if d) == expected_answer(QUESTION)


async def test_mcp_lists_and_calls_a_registered_strategy_with_its_own_arguments():
    """Catches: MCP tools that describe every strategy with A2R's arguments (``n``), or a
    call that drops the strategy's own argument."""
    server = build_server(LocalRunner())
    async with create_connected_server_and_client_session(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await client.call_tool("echo", {"question": QUESTION, "repeat": 3})
        refused = await client.call_tool("echo", {"question": QUESTION, "n": 4})
    assert set(tools) == {*BUILT_IN_NAMES, "echo"}
    assert set(tools["echo"].inputSchema["properties"]) == {"question", "repeat", "include_traces"}
    assert tools["echo"].description.startswith(ECHO.description)
    assert not result.isError and result.structuredContent["boxed_answer"] == "15"
    assert result.content[0].text.startswith("Final answer: 15")
    assert refused.isError and "arguments.n: unknown argument" in refused.content[0].text


async def test_as_tool_wraps_a_registered_strategy_by_its_name():
    """Catches: ``as_tool`` that builds the A2R graph whatever it is given."""
    tool = as_tool("echo")
    assert tool.name == "echo_reason" and tool.description == ECHO.description
    content = await tool.ainvoke({"question": QUESTION, "repeat": 2})
    assert content.startswith("Final answer: 10")


def test_a2r_ask_runs_a_registered_strategy_with_graph(capsys):
    """Catches: ``--graph`` ignored (the A2R graph would call the absent model servers)."""
    assert main(["ask", "--graph", "echo", "--db", ":memory:", "--json", QUESTION]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == expected_answer(QUESTION) and result["words"] == 5
    assert main(["ask", "--graph", "echo", "--db", ":memory:", QUESTION]) == 0
    assert "Final answer: 5" in capsys.readouterr().out


def test_a2r_ask_refuses_a2r_options_for_another_strategy_and_unknown_names(capsys):
    """Catches: A2R's flags silently ignored on another graph, and a misspelt name run as A2R."""
    assert main(["ask", "--graph", "echo", "--n", "4", "--db", ":memory:", QUESTION]) == 2
    assert "--n: options of the a2r graph" in capsys.readouterr().err
    assert main(["ask", "--graph", "ecko", "--db", ":memory:", QUESTION]) == 2
    names = ", ".join([*BUILT_IN_NAMES, "echo"])
    assert f"no strategy is named 'ecko': use one of {names}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("tests.nowhere:ECHO", "cannot load 'tests.nowhere:ECHO'"),
        ("tests.strategies:NOTHING", "cannot load 'tests.strategies:NOTHING'"),
        ("tests.strategies:expected_answer", "is a function, not a"),
    ],
)
def test_a_bad_registration_is_refused_naming_the_entry(deployment, entry, message):
    """Catches: a typo in A2R_STRATEGIES that silently serves nothing (or crashes a door
    with an ImportError instead of saying what to fix)."""
    deployment.setenv("A2R_STRATEGIES", entry)
    with pytest.raises(ConfigurationError, match=message):
        strategies()


def test_a_strategy_cannot_take_a_built_in_name(deployment):
    """Catches: a deployment's strategy that silently replaces A2R under its name."""
    deployment.setenv("A2R_STRATEGIES", "tests.strategies:SHADOW")
    with pytest.raises(ConfigurationError, match="named 'a2r', like another strategy"):
        strategy("a2r")
