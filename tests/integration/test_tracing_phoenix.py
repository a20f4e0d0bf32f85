"""Traces of real runs, read back from a real Phoenix through its REST API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from langgraph_sdk import get_client

from a2r_graph.serving.phoenix import PHOENIX_MODEL_REFRESH_S, Prices
from tests.integration.conftest import LANGGRAPH_SERVER_PROJECT
from tests.phoenix_spans import wait_for_spans

pytestmark = pytest.mark.integration
QUESTION = "A shelf has 4 rows of 7 books. How many books are on the shelf?"
PRICES = {"explorer": (0.1, 0.4), "synthesizer": (0.3, 1.2)}


def span_tree(spans: list[dict], run: dict) -> dict[str, list[dict]]:
    """The run's stage spans, and the model-call spans under each stage."""
    stages = {s["name"]: s for s in spans if s["parent_id"] == run["context"]["span_id"]}
    calls = {
        name: [s for s in spans if s["parent_id"] == stage["context"]["span_id"]]
        for name, stage in stages.items()
    }
    return {"stages": stages, "calls": calls}


def run_spans(spans: list[dict], n_calls: int, **attributes) -> tuple[dict, list[dict]] | None:
    """The finished run span matching ``attributes`` and its trace, once all calls arrived."""
    for run in spans:
        if run["name"] != "invoke_workflow a2r":
            continue
        if any(run["attributes"].get(k) != v for k, v in attributes.items()):
            continue
        trace = [s for s in spans if s["context"]["trace_id"] == run["context"]["trace_id"]]
        if sum(s["name"].startswith("chat ") for s in trace) == n_calls:
            return run, trace
    return None


def expected_cost(stage: str, tokens_in: int, tokens_out: int) -> float:
    price_in, price_out = PRICES[stage]
    return (tokens_in * price_in + tokens_out * price_out) / 1e6


def assert_a2r_trace(run: dict, trace: list[dict], n: int, result: dict) -> None:
    tree = span_tree(trace, run)
    assert set(tree["stages"]) == {"explore", "reduce", "synthesize"}
    explore_calls = tree["calls"]["explore"]
    synth_calls = tree["calls"]["synthesize"]
    assert len(explore_calls) == n and len(synth_calls) == 1 and tree["calls"]["reduce"] == []
    for call in explore_calls + synth_calls:
        attrs = call["attributes"]
        assert call["span_kind"] == "LLM"  # Phoenix's kind for gen_ai "chat" spans
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == result["synthesis"]["model"]
        assert attrs["server.address"] == "127.0.0.1"
        assert "gen_ai.input.messages" not in attrs  # content capture is off by default

    by_path = {c["attributes"]["a2r.path.index"]: c["attributes"] for c in explore_calls}
    assert sorted(by_path) == list(range(n))
    for path in result["paths"]:
        attrs, usage = by_path[path["index"]], path["usage"]
        assert attrs["gen_ai.usage.input_tokens"] == usage["input_tokens"]
        assert attrs["gen_ai.usage.output_tokens"] == usage["output_tokens"]
        assert attrs["a2r.cost"] == pytest.approx(
            expected_cost("explorer", usage["input_tokens"], usage["output_tokens"])
        )
    synth = synth_calls[0]["attributes"]
    assert synth["gen_ai.usage.output_tokens"] == result["synthesis"]["usage"]["output_tokens"]

    explore = tree["stages"]["explore"]["attributes"]
    assert explore["a2r.usage.input_tokens"] == result["usage"]["explore"]["input_tokens"]
    assert explore["a2r.usage.output_tokens"] == result["usage"]["explore"]["output_tokens"]
    cost_e = sum(
        expected_cost("explorer", p["usage"]["input_tokens"], p["usage"]["output_tokens"])
        for p in result["paths"]
    )
    cost_s = expected_cost(
        "synthesizer", synth["gen_ai.usage.input_tokens"], synth["gen_ai.usage.output_tokens"]
    )
    assert explore["a2r.cost"] == pytest.approx(cost_e)
    assert tree["stages"]["synthesize"]["attributes"]["a2r.cost"] == pytest.approx(cost_s)
    assert run["attributes"]["a2r.cost"] == pytest.approx(cost_e + cost_s)
    assert run["attributes"]["a2r.usage.output_tokens"] == result["usage"]["total"]["output_tokens"]


def test_cli_run_is_traced_into_phoenix_with_the_servers_tokens(vllm_server, phoenix):
    project = "a2r-cli"
    env = {
        **os.environ,
        **phoenix.otel_env("a2r-cli", project=project),
        "A2R_EXPLORER__BASE_URL": vllm_server.base_url,
        "A2R_EXPLORER__MODEL": vllm_server.model_name,
        "A2R_SYNTHESIZER__BASE_URL": vllm_server.base_url,
        "A2R_SYNTHESIZER__MODEL": vllm_server.model_name,
    }
    for stage, (price_in, price_out) in PRICES.items():
        env[f"A2R_{stage.upper()}__INPUT_PRICE_PER_MTOK"] = str(price_in)
        env[f"A2R_{stage.upper()}__OUTPUT_PRICE_PER_MTOK"] = str(price_out)
    before = vllm_server.token_counters()
    shown = subprocess.run(
        [sys.executable, "-m", "a2r_graph.serving.cli", "ask", QUESTION, "--n", "3",
         "--max-tokens", "40", "--json"],
        env=env, check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    after = vllm_server.token_counters()
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)

    spans = wait_for_spans(phoenix, lambda s: run_spans(s, 4), project=project, timeout=60)
    run, trace = run_spans(spans, 4)
    assert_a2r_trace(run, trace, 3, result)
    # the traced tokens are the server's own counts
    traced_in = sum(
        s["attributes"]["gen_ai.usage.input_tokens"] for s in trace if s["name"].startswith("chat ")
    )
    assert traced_in == after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]


async def test_langgraph_server_run_is_traced_into_phoenix(langgraph_server, phoenix):
    client = get_client(url=langgraph_server)
    thread = await client.threads.create()
    result = await client.runs.wait(
        thread["thread_id"], "a2r", input={"question": QUESTION}, context={"n": 2}
    )
    match = {"a2r.thread_id": thread["thread_id"]}
    spans = wait_for_spans(
        phoenix, lambda s: run_spans(s, 3, **match), project=LANGGRAPH_SERVER_PROJECT, timeout=60
    )
    run, trace = run_spans(spans, 3, **match)
    assert_a2r_trace(run, trace, 2, result)


PHOENIX_PRICE = Prices(input=20.0, output=80.0)
"""Both stages' price per 1M tokens in the cost test: Phoenix prices by model name, and both
stages run the one test model."""


def phoenix_trace_cost(phoenix, project: str, trace_id: str) -> dict:
    """Phoenix's own cost figures for a trace and its project (GraphQL, as its UI reads them)."""
    summary = "costSummary { total { cost } prompt { cost } completion { cost } }"
    query = f"""query($project: String!, $trace: ID!) {{ getProjectByName(name: $project) {{
        trace(traceId: $trace) {{ {summary} }} {summary} }} }}"""
    reply = httpx.post(
        f"{phoenix.url}/graphql",
        json={"query": query, "variables": {"project": project, "trace": trace_id}},
        timeout=30,
    )
    assert reply.status_code == 200 and not reply.json().get("errors"), reply.text
    return reply.json()["data"]["getProjectByName"]


def test_phoenix_shows_the_runs_real_cost_once_the_prices_are_registered(vllm_server, phoenix):
    """Catches: Phoenix's "Total Cost $0" (no price registered, or under another model name
    than the spans carry), and a registered price that is not the deployment's (Phoenix's
    figure would then differ from a2r.cost)."""
    project = "a2r-cost"
    price_env = {
        f"A2R_{stage}__{kind}_PRICE_PER_MTOK": str(getattr(PHOENIX_PRICE, kind.lower()))
        for stage in ("EXPLORER", "SYNTHESIZER")
        for kind in ("INPUT", "OUTPUT")
    }
    env = {
        **os.environ,
        **phoenix.otel_env("a2r-cost", project=project),
        **price_env,
        "A2R_EXPLORER__BASE_URL": vllm_server.base_url,
        "A2R_EXPLORER__MODEL": vllm_server.model_name,
        "A2R_SYNTHESIZER__BASE_URL": vllm_server.base_url,
        "A2R_SYNTHESIZER__MODEL": vllm_server.model_name,
    }
    registered = subprocess.run(
        [sys.executable, "-m", "a2r_graph.serving.cli", "phoenix-prices", "--phoenix", phoenix.url],
        env=env, check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert f"{vllm_server.model_name}: input 20, output 80" in registered.stdout
    # Phoenix prices a span when it ingests it, from a model table it reloads every 5 s.
    time.sleep(PHOENIX_MODEL_REFRESH_S)
    shown = subprocess.run(
        [sys.executable, "-m", "a2r_graph.serving.cli", "ask", QUESTION, "--n", "2",
         "--max-tokens", "40", "--json"],
        env=env, check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    spans = wait_for_spans(phoenix, lambda s: run_spans(s, 3), project=project, timeout=60)
    run, _ = run_spans(spans, 3)
    a2r_cost = run["attributes"]["a2r.cost"]
    assert a2r_cost == pytest.approx(result["usage"]["total"]["cost"]) and a2r_cost > 0
    figures = phoenix_trace_cost(phoenix, project, run["context"]["trace_id"])
    cost = figures["trace"]["costSummary"]
    print(f"a2r.cost {a2r_cost:.8f}; Phoenix: trace {cost}, project {figures['costSummary']}")
    assert cost["total"]["cost"] == pytest.approx(a2r_cost, rel=1e-6)
    tokens = result["usage"]["total"]
    assert cost["prompt"]["cost"] == pytest.approx(tokens["input_tokens"] * 20.0 / 1e6)
    assert cost["completion"]["cost"] == pytest.approx(tokens["output_tokens"] * 80.0 / 1e6)
    assert figures["costSummary"]["total"]["cost"] == pytest.approx(a2r_cost, rel=1e-6)
