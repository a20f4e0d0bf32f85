"""R2-Reasoner's mechanics on two real llama.cpp servers (the same small model plays both
tiers): the plan is constrained by the server's grammar, subtasks reach the tier the
allocator chose, and what a run reports for each tier is what that server counted."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from a2r_graph.r2reasoner.graph import build_reasoner_graph
from a2r_graph.serving.cli import main
from a2r_graph.serving.tool import as_tool
from tests.integration.conftest import (
    AUTH,
    Server,
    assert_plan_constrained,
    langgraph_dev,
    reasoner_context,
    two_llamacpp_servers,
)

pytestmark = pytest.mark.integration

PREDICTED = "llamacpp:tokens_predicted_total"
PROMPT = "llamacpp:prompt_tokens_total"
CACHED = "llamacpp:prompt_tokens_cached_total"
QUESTION = "Tom has 3 boxes of 4 apples and eats 2 apples. How many apples are left?"


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[Server, Server]]:
    with two_llamacpp_servers("smollm2-135m", slots=2) as servers:
        yield servers


def counted(server: Server, before: dict[str, float]) -> dict[str, int]:
    after = server.counters(PREDICTED, PROMPT, CACHED)
    return {name: round(after[name] - before[name]) for name in before}


async def test_the_server_constrains_the_plan_to_the_schema(two_servers):
    """Catches: ``response_format`` not reaching the server, or a schema llama.cpp cannot
    turn into a grammar (a 400)."""
    await assert_plan_constrained(two_servers[0])


@pytest.mark.parametrize("start", ["smallest", "largest"])
async def test_subtasks_reach_the_chosen_tier_and_each_server_counts_what_the_run_reports(
    two_servers, start
):
    """Catches: a subtask sent to another tier than the allocator's, or a tier's calls
    missing from (or double-counted in) the run's usage."""
    small, large = two_servers
    before = {s: s.counters(PREDICTED, PROMPT, CACHED) for s in (small, large)}
    out = await build_reasoner_graph().ainvoke(
        {"question": QUESTION}, context=reasoner_context(small, large, start=start)
    )
    servers = {"small": counted(small, before[small]), "large": counted(large, before[large])}
    usage = out["usage"]
    print(f"\nplan {out['plan']}; subtasks {[(s['id'], s['tier']) for s in out['subtasks']]}")
    print(f"usage {usage}; servers counted {servers}")
    assert out["plan"]["status"] == "ok", out["plan"]
    assert {s["tier"] for s in out["subtasks"]} == {"small" if start == "smallest" else "large"}
    subtask_calls = len(out["subtasks"])
    plan_and_summary = out["plan"]["attempts"] + 1
    expected_calls = {
        "small": subtask_calls if start == "smallest" else 0,
        "large": plan_and_summary + (subtask_calls if start == "largest" else 0),
    }
    for tier, server in servers.items():
        assert usage[tier]["calls"] == expected_calls[tier]
        assert server[PREDICTED] == usage[tier]["output_tokens"]
        assert server[PROMPT] + server[CACHED] == usage[tier]["input_tokens"]


@pytest.fixture(scope="module")
def reasoner_server(two_servers, tmp_path_factory) -> Iterator[str]:
    """``langgraph dev`` whose deployment's tiers are the two llama.cpp servers."""
    planning = {"MAX_DEPTH": "16", "PLAN_ATTEMPTS": "3", "PLAN_MAX_TOKENS": "256"}
    env = tier_env(*two_servers) | {f"A2R_R2REASONER__{k}": v for k, v in planning.items()}
    folder = tmp_path_factory.mktemp("r2reasoner-server")
    with langgraph_dev(env, folder / "langgraph-dev.log") as (url, _):
        yield url


def test_r2reasoner_through_langgraph_servers_doors(two_servers, reasoner_server):
    """Catches: a door that cannot reach the r2reasoner graph on a real server (graph id,
    OpenAI model, MCP tool), a caller's allocation that never reaches the run, or a caller
    adding a tier (an endpoint the server would call)."""
    _, large = two_servers
    http = httpx.Client(base_url=reasoner_server, headers=AUTH, timeout=300)
    question = {"question": QUESTION}
    before = large.counters(PREDICTED)
    run = http.post(
        "/runs/wait",
        json={
            "assistant_id": "r2reasoner",
            "input": question,
            "context": {"r2reasoner": {"start": "largest"}},
        },
    )
    assert run.status_code == 200, run.text
    out = run.json()
    assert out["usage"]["small"]["calls"] == 0 and out["usage"]["large"]["cost"] > 0
    assert counted(large, before)[PREDICTED] == out["usage"]["large"]["output_tokens"]
    refused = http.post(
        "/runs/wait",
        json={
            "assistant_id": "r2reasoner",
            "input": question,
            "context": {"tiers": [{"name": "x", "model": "m", "base_url": "http://evil.test/v1"}]},
        },
    )
    assert refused.status_code == 422 and "tiers" in refused.text
    messages = [{"role": "user", "content": QUESTION}]
    body = {"model": "r2reasoner:r2reasoner.plan_attempts=0", "messages": messages, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as streamed:
        chunks = [json.loads(line[6:]) for line in streamed.iter_lines() if line[:7] == "data: {"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip() and chunks[-1]["a2r"]["usage"]["total"]["calls"] == 1
    mcp = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    mcp["params"] = {"name": "r2reasoner", "arguments": question}
    headers = {**AUTH, "accept": "application/json, text/event-stream"}
    called = http.post("/mcp", headers=headers, json=mcp).json()["result"]
    assert not called["isError"] and called["structuredContent"]["usage"]["total"]["calls"] >= 2


def tier_env(small: Server, large: Server) -> dict[str, str]:
    return {
        "A2R_EXPLORER__BASE_URL": small.base_url,
        "A2R_EXPLORER__MODEL": small.model_name,
        "A2R_SYNTHESIZER__BASE_URL": large.base_url,
        "A2R_SYNTHESIZER__MODEL": large.model_name,
        "A2R_EXPLORER__MAX_TOKENS": "64",
        "A2R_SYNTHESIZER__MAX_TOKENS": "64",
        "A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK": "2.0",
    }


@pytest.fixture
def deployment(two_servers, monkeypatch) -> Server:
    """This process's ``A2R_*``: the two servers as tiers, no plan (the large tier alone)."""
    small, large = two_servers
    for name, value in tier_env(small, large).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("A2R_R2REASONER__PLAN_ATTEMPTS", "0")
    return large


async def test_as_tool_runs_r2reasoner_by_name(deployment):
    """Catches: ``as_tool("r2reasoner")`` running another strategy, or not reading the
    deployment's tiers from ``A2R_*``."""
    before = deployment.counters(PREDICTED)
    message = await as_tool("r2reasoner").ainvoke(
        {"type": "tool_call", "id": "1", "name": "r2reasoner", "args": {"question": QUESTION}}
    )
    usage = message.artifact["usage"]
    assert message.artifact["plan"]["status"] == "off"
    assert counted(deployment, before)[PREDICTED] == usage["large"]["output_tokens"] > 0


def test_a2r_ask_runs_r2reasoner_by_name(deployment, capsys):
    """Catches: ``a2r ask --graph r2reasoner`` running another strategy or printing A2R's
    report."""
    assert main(["ask", "--graph", "r2reasoner", "--db", ":memory:", QUESTION]) == 0
    printed = capsys.readouterr().out
    assert "Plan: off, 0 subtasks" in printed and "Final answer:" in printed
