"""R2R (a2r_graph.r2r) at the doors of ``a2r serve``, over scripted token servers
(tests/r2r_fakes.py): the OpenAI endpoint's ``model`` with routing options, its stream, the MCP
tool; what a caller may not choose is refused. Over real llama.cpp servers and a real LangGraph
Server: tests/integration/test_r2r_llamacpp.py."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from a2r_graph.r2r.graph import build_r2r_graph
from a2r_graph.serving.registry import R2R
from a2r_graph.serving.runners import LocalRunner
from a2r_graph.serving.serve import build_app
from tests.fakes import fake_deployment, openai_chat, openai_stream
from tests.mcp_calls import call_tool
from tests.r2r_fakes import FakeServer, servers_for

SLM_TEXT = "So 6*7 is \\boxed{41}."
LLM_TEXT = "So 6*7 is \\boxed{42}!"


@pytest.fixture
def runner(monkeypatch):
    """The deployment: the SLM on the explorer endpoint, the LLM on the synthesizer's."""
    fake_deployment(monkeypatch)
    slm = FakeServer("slm-0.5b", SLM_TEXT, unsure={SLM_TEXT.index("1}")})
    llm = FakeServer("llm-1.5b", LLM_TEXT)
    for stage, fake in (("EXPLORER", slm), ("SYNTHESIZER", llm)):
        monkeypatch.setenv(f"A2R_{stage}__MODEL", fake.model)
        monkeypatch.setenv(f"A2R_{stage}__BASE_URL", str(fake.stage().base_url))
        monkeypatch.setenv(f"A2R_{stage}__TEMPERATURE", "0")
        monkeypatch.setenv(f"A2R_{stage}__OUTPUT_PRICE_PER_MTOK", "1.0")
    monkeypatch.setenv("A2R_SERVER_API_KEY", "sk-test")
    graph = build_r2r_graph(servers=servers_for(slm, llm), context_schema=R2R.options)
    return LocalRunner({"r2r": graph})


def chat(http: TestClient, model: str, **body) -> dict:
    return openai_chat(http, model, "What is 6*7?", **body)


def test_the_openai_endpoint_runs_r2r_with_the_callers_routing(runner):
    """Catches: the ``r2r`` model running A2R, routing options lost on the way (a threshold
    above every token's entropy must leave the SLM's answer), or usage missing a model."""
    with TestClient(build_app(runner, mcp=False), base_url="http://127.0.0.1:8100") as http:
        routed = chat(http, "r2r")
        never = chat(http, "r2r:r2r.threshold=5")
    assert routed["status"] == 200, routed
    assert routed["choices"][0]["message"]["content"] == "So 6*7 is \\boxed{42}."
    assert routed["a2r"]["boxed_answer"] == "42"
    assert set(routed["a2r"]["usage"]) == {"slm", "llm", "total"}
    assert routed["usage"]["cost"] == routed["a2r"]["usage"]["total"]["cost"] > 0
    assert never["a2r"]["boxed_answer"] == "41" and never["a2r"]["usage"]["llm"]["calls"] == 0


@pytest.mark.parametrize(
    "option",
    ["r2r.router_file=/etc/passwd", "explorer.base_url=http://evil.test/v1", "r2r.top_k=50"],
)
def test_a_caller_cannot_choose_files_endpoints_or_out_of_range_routing(runner, option):
    """Catches: a server caller naming a file the server reads, an endpoint it calls, or a
    top-k the servers refuse (a run that fails after paying for the prompt)."""
    with TestClient(build_app(runner, mcp=False), base_url="http://127.0.0.1:8100") as http:
        refused = chat(http, f"r2r:{option}")
    assert refused["status"] == 400 and option.split("=")[0] in refused["error"]["message"]


def test_the_openai_stream_carries_both_models_tokens(runner):
    """Catches: a stream that listens for chat-model chunks (R2R writes with its own events:
    nothing would stream) or drops the LLM's tokens."""
    with TestClient(build_app(runner, mcp=False), base_url="http://127.0.0.1:8100") as http:
        chunks = openai_stream(http, "r2r", "What is 6*7?")
    text = "".join(c[0]["delta"].get("content") or "" for c in chunks if c)
    assert text == "So 6*7 is \\boxed{42}."
    assert len([c for c in chunks if c and c[0]["delta"].get("content")]) >= 3  # SLM, LLM, SLM


async def test_mcp_serves_r2r_as_a_tool_that_takes_a_question(runner):
    """Catches: the R2R tool described with A2R's arguments, or its result without usage."""
    tool, result = await call_tool(runner, "r2r", {"question": "What is 6*7?"})
    assert set(tool.inputSchema["properties"]) == {"question", "include_traces"}
    assert tool.description.startswith(R2R.description)
    assert not result.isError and result.structuredContent["boxed_answer"] == "42"
    assert result.structuredContent["usage"]["llm"]["calls"] == 1
