"""R2-Reasoner (a2r_graph.r2reasoner) at the doors of ``a2r serve``, over fake tiers
(tests/r2reasoner_fakes.py): the OpenAI endpoint's ``model`` with planning options, its
stream, the MCP tool; what a caller may not choose is refused. Over real llama.cpp servers:
tests/integration/test_r2reasoner_llamacpp.py."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from a2r_graph.r2reasoner.graph import build_reasoner_graph
from a2r_graph.serving.registry import R2REASONER
from a2r_graph.serving.runners import LocalRunner
from a2r_graph.serving.serve import build_app
from tests.fakes import fake_deployment, openai_chat, openai_stream
from tests.mcp_calls import call_tool
from tests.r2reasoner_fakes import answers, plan, serve


@pytest.fixture
def tiers(monkeypatch):
    fake_deployment(monkeypatch)
    for stage, model in (("EXPLORER", "small-model"), ("SYNTHESIZER", "large-model")):
        monkeypatch.setenv(f"A2R_{stage}__MODEL", model)
        monkeypatch.setenv(f"A2R_{stage}__OUTPUT_PRICE_PER_MTOK", "1.0")
    monkeypatch.setenv("A2R_SERVER_API_KEY", "sk-test")
    return serve(plan((1, []), (2, [1])), answers({1: "12", 2: "27"}))


@pytest.fixture
def runner(tiers):
    _, factory = tiers
    graph = build_reasoner_graph(factory, context_schema=R2REASONER.options)
    return LocalRunner({"r2reasoner": graph})


def chat(http: TestClient, model: str, **body) -> dict:
    return openai_chat(http, model, "Pens cost 3. What do 4 pens cost?", **body)


def test_the_openai_endpoint_runs_r2reasoner_with_the_callers_allocation(runner, tiers):
    """Catches: the ``r2reasoner`` model running another graph, allocation options lost on
    the way (``start=largest`` must send every subtask to the large tier), or usage missing
    a tier."""
    fakes, _ = tiers
    with TestClient(build_app(runner, mcp=False), base_url="http://127.0.0.1:8100") as http:
        default = chat(http, "r2reasoner")
        largest = chat(http, "r2reasoner:r2reasoner.start=largest")
    assert default["status"] == 200, default
    assert default["choices"][0]["message"]["content"] == "The total is \\boxed{27}"
    assert set(default["a2r"]["usage"]) == {"small", "large", "total"}
    assert [s["tier"] for s in default["a2r"]["subtasks"]] == ["small", "small"]
    assert [s["tier"] for s in largest["a2r"]["subtasks"]] == ["large", "large"]
    assert default["usage"]["cost"] == default["a2r"]["usage"]["total"]["cost"] > 0
    assert len(fakes["large-model"].prompts("subtask")) == 2


@pytest.mark.parametrize(
    "option",
    [
        "r2reasoner.decomposer=huge",
        "tiers=[]",
        "r2reasoner.max_subtasks=99",
        "explorer.base_url=http://evil.test/v1",
    ],
)
def test_a_caller_cannot_choose_tiers_endpoints_or_unbounded_plans(runner, option):
    """Catches: a server caller adding a tier (an endpoint the server calls), naming a tier
    the deployment lacks, or asking for a plan larger than the bounds."""
    with TestClient(build_app(runner, mcp=False), base_url="http://127.0.0.1:8100") as http:
        refused = chat(http, f"r2reasoner:{option}")
    assert refused["status"] == 400, refused
    assert option.split("=")[0].split(".")[-1] in refused["error"]["message"]


def test_the_openai_stream_carries_the_summary(runner):
    """Catches: a stream that carries the subtasks' tokens as the answer, or nothing."""
    with TestClient(build_app(runner, mcp=False), base_url="http://127.0.0.1:8100") as http:
        chunks = openai_stream(http, "r2reasoner", "Pens cost 3. What do 4 pens cost?")
    text = "".join(c[0]["delta"].get("content") or "" for c in chunks if c)
    assert text == "The total is \\boxed{27}"


async def test_mcp_serves_r2reasoner_as_a_tool_that_takes_a_question(runner):
    """Catches: the tool described with A2R's arguments, or its result without the tiers'
    usage."""
    tool, result = await call_tool(runner, "r2reasoner", {"question": "What do 4 pens cost?"})
    assert set(tool.inputSchema["properties"]) == {"question", "include_traces"}
    assert tool.description.startswith(R2REASONER.description)
    assert not result.isError and result.structuredContent["boxed_answer"] == "27"
    assert result.structuredContent["usage"]["small"]["calls"] == 2
