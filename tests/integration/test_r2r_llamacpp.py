"""R2R's mechanics on two real llama.cpp servers (the same small model plays both roles): what
a run reports for each model is what that server counted, and a flagged token really stops
the SLM's generation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from a2r_graph.context import A2RContext
from a2r_graph.graph import build_graph
from a2r_graph.r2r.chat_model import ChatR2R, routed_explorer
from a2r_graph.r2r.client import TokenServer
from a2r_graph.r2r.graph import build_r2r_graph
from a2r_graph.r2r.loop import Step
from a2r_graph.r2r.prepare import prompt_ids
from a2r_graph.r2r.routers import TokenChoice
from a2r_graph.telemetry import Telemetry
from tests.integration.conftest import (
    AUTH,
    Server,
    langgraph_dev,
    r2r_context,
    two_llamacpp_servers,
)

pytestmark = pytest.mark.integration

PREDICTED = "llamacpp:tokens_predicted_total"
PROMPT = "llamacpp:prompt_tokens_total"
CACHED = "llamacpp:prompt_tokens_cached_total"
OVERRUN_PER_ABORT = 4
"""Tokens a server may still generate after the client closed its stream, before it notices
(measured: 0-2 on two loaded cores)."""


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[Server, Server]]:
    with two_llamacpp_servers("smollm2-135m", slots=1) as servers:
        yield servers


def counters(server: Server) -> dict[str, float]:
    return server.counters(PREDICTED, PROMPT, CACHED)


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {name: round(after[name] - before[name]) for name in before}


async def test_each_servers_counters_match_what_the_run_reports(two_servers):
    slm, llm = two_servers
    before = {"slm": counters(slm), "llm": counters(llm)}
    out = await build_r2r_graph().ainvoke(
        {"question": "What is 6*7? Answer in one short sentence."},
        context=r2r_context(slm, llm, threshold=1.0, max_tokens=48, top_k=5),
    )
    await asyncio.sleep(0.5)  # the SLM server notices the last closed stream
    counted = {
        "slm": delta(before["slm"], counters(slm)),
        "llm": delta(before["llm"], counters(llm)),
    }
    usage, cached = out["usage"], out["cached_input_tokens"]
    print(f"\nrun: {out['tokens']} tokens, {out['switches']} switches; usage {usage}")
    print(f"cached input {cached}; servers counted {counted}")
    assert out["switches"] >= 1 and out["tokens"]["llm"] == out["switches"]
    assert out["answer"].strip()
    # the LLM's calls all run to their end: its counter is exactly what the run reports
    assert counted["llm"][PREDICTED] == usage["llm"]["output_tokens"] == out["switches"]
    for model in ("slm", "llm"):
        assert counted[model][PROMPT] + counted[model][CACHED] == usage[model]["input_tokens"]
        assert counted[model][CACHED] == cached[model]
    # prefix caching: each call prefills little beyond its new suffix
    assert cached["llm"] > 0.8 * usage["llm"]["input_tokens"]
    # the SLM's streams stopped at flagged tokens: the server may have generated a few more
    overrun = counted["slm"][PREDICTED] - usage["slm"]["output_tokens"]
    assert 0 <= overrun <= OVERRUN_PER_ABORT * out["switches"]


@dataclass(frozen=True)
class FlagAt:
    """A router that flags the token at ``position``."""

    position: int
    name: str = "flag-at"
    threshold: float = 0.0

    def flags(self, token: TokenChoice) -> bool:
        return token.position == self.position


async def test_a_flagged_token_stops_the_slms_generation(two_servers):
    slm, llm = two_servers
    context = r2r_context(slm, llm, max_tokens=400)
    async with (
        TokenServer(context.explorer, 60) as slm_server,
        TokenServer(context.synthesizer, 60) as llm_server,
    ):
        await slm_server.describe()
        await llm_server.describe()
        prompt = await prompt_ids(
            slm_server, context, "Write a long story about a lighthouse keeper."
        )
        before = counters(slm)
        step = Step(slm_server, llm_server, context, FlagAt(5), Telemetry("r2r", {}), _ignore)
        result = await step.run(prompt, 0)
    await asyncio.sleep(1.0)
    generated = delta(before, counters(slm))[PREDICTED]
    slot = await _slot(slm)
    print(f"\nSLM asked for up to 400 tokens, flagged at 5: the server generated {generated}")
    assert result.flagged is not None and result.flagged.position == 5
    assert len(result.slm_ids) == 5 and len(result.llm_ids) == 1
    assert 6 <= generated <= 6 + OVERRUN_PER_ABORT
    assert slot["is_processing"] is False


def _ignore(*args: object) -> None:
    pass


async def _slot(server: Server) -> dict:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.root}/slots")
    return response.json()[0]


@pytest.fixture(scope="module")
def r2r_server(two_servers, tmp_path_factory) -> Iterator[str]:
    """``langgraph dev`` whose deployment routes between the two llama.cpp servers."""
    slm, llm = two_servers
    env = {
        "A2R_EXPLORER__BASE_URL": slm.base_url,
        "A2R_EXPLORER__MODEL": slm.model_name,
        "A2R_SYNTHESIZER__BASE_URL": llm.base_url,
        "A2R_SYNTHESIZER__MODEL": llm.model_name,
        "A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK": "2.0",
        "A2R_R2R__TOP_K": "5",
    }
    log_path = tmp_path_factory.mktemp("r2r-server") / "langgraph-dev.log"
    with langgraph_dev(env, log_path) as (url, _):
        yield url


def test_r2r_through_langgraph_servers_doors(two_servers, r2r_server):
    """Catches: a door that cannot reach the r2r graph on a real server (graph id, OpenAI
    model, MCP tool), a caller's routing that never reaches the run, or a run whose reported
    LLM tokens are not what the LLM's server generated."""
    slm, llm = two_servers
    http = httpx.Client(base_url=r2r_server, headers=AUTH, timeout=300)
    question = {"question": "What is 6*7? Answer in one short sentence."}
    routing = {"r2r": {"threshold": 1.0, "max_tokens": 32}}
    before = counters(llm)
    run = http.post(
        "/runs/wait", json={"assistant_id": "r2r", "input": question, "context": routing}
    )
    assert run.status_code == 200, run.text
    out = run.json()
    assert out["switches"] >= 1 and out["usage"]["llm"]["cost"] > 0
    assert delta(before, counters(llm))[PREDICTED] == out["usage"]["llm"]["output_tokens"]
    refused = http.post(
        "/runs/wait",
        json={"assistant_id": "r2r", "input": question, "context": {"r2r": {"router_file": "x"}}},
    )
    assert refused.status_code == 422 and "router_file" in refused.text
    messages = [{"role": "user", "content": question["question"]}]
    body = {"model": "r2r:r2r.max_tokens=16", "messages": messages, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as streamed:
        chunks = [json.loads(line[6:]) for line in streamed.iter_lines() if line[:7] == "data: {"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip() and chunks[-1]["a2r"]["usage"]["total"]["output_tokens"] >= 16
    mcp = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    mcp["params"] = {"name": "r2r", "arguments": question}
    headers = {**AUTH, "accept": "application/json, text/event-stream"}
    called = http.post("/mcp", headers=headers, json=mcp).json()["result"]
    assert not called["isError"] and called["structuredContent"]["usage"]["slm"]["calls"] >= 1


async def test_r2r_as_a_chat_model_and_as_a2rs_explorer(two_servers):
    """Catches: ``ChatR2R`` reporting other tokens than the two servers generated, and A2R
    over routed paths pricing them at the explorer's prices alone (the LLM's tokens are
    priced 100x here: a routed path must cost more than its tokens at the SLM's price)."""
    slm, llm = two_servers
    context = r2r_context(slm, llm, threshold=1.0, top_k=5)
    priced_llm = context.synthesizer.model_copy(update={"output_price_per_mtok": 200.0})
    context = context.model_copy(update={"synthesizer": priced_llm})
    model = ChatR2R(context=context)
    before = {"slm": counters(slm), "llm": counters(llm)}
    message = await model.ainvoke("What is 6*7? Answer in one short sentence.", max_tokens=32)
    await asyncio.sleep(0.5)
    generated = sum(
        delta(before[m], counters(s))[PREDICTED] for m, s in (("slm", slm), ("llm", llm))
    )
    switches = message.response_metadata["r2r"]["switches"]
    assert switches >= 1 and message.text.strip()
    assert 0 <= generated - message.usage_metadata["output_tokens"] <= OVERRUN_PER_ABORT * switches
    a2r = A2RContext(
        explorer=context.explorer.model_dump() | {"max_tokens": 32},
        synthesizer=context.synthesizer.model_dump() | {"max_tokens": 32},
        n=2,
        synthesis_mode="synthesize",
        request_timeout_s=120,
    )
    out = await build_graph(routed_explorer(model)).ainvoke(
        {"question": "What is 6*7?"}, context=a2r
    )
    explore = out["usage"]["explore"]
    assert [path["error"] for path in out["paths"]] == [None, None]
    at_slm_prices = context.explorer.cost(explore["input_tokens"], explore["output_tokens"])
    assert explore["cost"] > at_slm_prices
