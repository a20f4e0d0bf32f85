"""R2R as a chat model (a2r_graph.r2r.chat_model) over scripted token servers: a routed run per
call, its usage and cost at both models' prices, the call's sampling on both models, and A2R
with routed explorer paths."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from a2r_graph.context import A2RContext
from a2r_graph.graph import build_graph
from a2r_graph.r2r.chat_model import ChatR2R, routed_explorer
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.graph import build_r2r_graph
from tests.fakes import reply, scripted
from tests.r2r_fakes import FakeServer, servers_for

SLM_TEXT = "So 6*7 is \\boxed{41}."
LLM_TEXT = "So 6*7 is \\boxed{42}!"


def routed() -> tuple[ChatR2R, FakeServer, FakeServer]:
    slm = FakeServer("slm-0.5b", SLM_TEXT, unsure={SLM_TEXT.index("1}")})
    llm = FakeServer("llm-1.5b", LLM_TEXT)
    context = R2RContext(
        explorer=slm.stage(output_price_per_mtok=1e6),
        synthesizer=llm.stage(output_price_per_mtok=10e6),
        retry_initial_wait_s=0,
        retry_max_wait_s=0,
    )
    graph = build_r2r_graph(servers=servers_for(slm, llm))
    return ChatR2R(context=context, graph=graph), slm, llm


def prompt_text(server: FakeServer) -> str:
    return "".join(chr(i) for i in server.requests[0]["prompt"])


async def test_a_call_is_a_routed_run_priced_at_both_models():
    """Catches: the LLM's tokens missing from the reply, usage of one model only, a cost at
    one model's prices, or the message wrapped in another prompt."""
    model, slm, llm = routed()
    message = await model.ainvoke([HumanMessage("What is 6*7? Box it.")])
    assert message.text == "So 6*7 is \\boxed{42}."
    meta = message.response_metadata
    assert meta["r2r"]["switches"] == 1 and meta["r2r"]["tokens"]["llm"] == 1
    assert meta["a2r_cost"] == pytest.approx(
        message.usage_metadata["output_tokens"] - 1 + 10 * 1, rel=0.2
    )  # the SLM's tokens at 1 a token, the LLM's one at 10
    assert prompt_text(slm).startswith("<user>What is 6*7? Box it.\n")


async def test_the_calls_sampling_reaches_both_models():
    """Catches: A2R's per-path seeds and temperature dropped (every routed path the same)."""
    model, slm, llm = routed()
    await model.ainvoke("What is 6*7?", temperature=0.7, seed=11, max_tokens=64)
    for server in (slm, llm):
        assert {(r["temperature"], r["seed"]) for r in server.requests} == {(0.7, 11)}
    assert slm.requests[0]["max_tokens"] <= 64


async def test_a2r_over_routed_paths_counts_each_paths_routed_cost():
    """Catches: routed paths priced at the explorer's price alone (the LLM's share lost), or
    the explorer stage not routed at all."""
    model, slm, llm = routed()
    synthesizer = scripted(reply("Both say 42. \\boxed{42}", input_tokens=30, output_tokens=5))
    vllm = {"synth": synthesizer}
    factory = routed_explorer(model)

    def chat_model(stage, timeout_s):
        return vllm["synth"] if stage.model == "synth" else factory(stage, timeout_s)

    context = A2RContext(
        explorer=model.context.explorer,
        synthesizer={"model": "synth", "context_window": 32768},
        n=2,
        synthesis_mode="synthesize",
        retry_initial_wait_s=0,
        retry_max_wait_s=0,
    )
    out = await build_graph(chat_model).ainvoke({"question": "What is 6*7?"}, context=context)
    assert [path["boxed"] for path in out["paths"]] == ["42", "42"]
    assert slm.closed_streams >= 2 and len(llm.requests) == 2  # a switch on each path
    assert out["usage"]["explore"]["cost"] > out["usage"]["explore"]["output_tokens"]
    assert out["boxed_answer"] == "42"
