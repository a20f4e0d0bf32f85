"""R2-Reasoner on the real vLLM server (it serves both tiers): the plan is held to its schema
by vLLM's structured outputs, and what a run reports is what vLLM counted."""

from __future__ import annotations

import pytest

from a2r_graph.r2reasoner.graph import build_reasoner_graph
from tests.integration.conftest import assert_plan_constrained, reasoner_context

pytestmark = pytest.mark.integration

COUNTERS = ("vllm:generation_tokens_total", "vllm:prompt_tokens_total")


async def test_vllm_constrains_the_plan_to_the_schema(vllm_server):
    """Catches: ``response_format`` in a form vLLM ignores or refuses (its structured outputs
    read ``json_schema`` from the request body, not llama.cpp's grammar)."""
    await assert_plan_constrained(vllm_server)


async def test_a_run_on_vllm_counts_what_vllm_counted(vllm_server):
    """Catches: a tier's calls missing from (or double-counted in) the run's usage on vLLM,
    the refused plans' calls included (this 135M model's plans may be cyclic or cut short:
    the run then falls back to the summarizer, and every call is still counted)."""
    before = vllm_server.counters(*COUNTERS)
    out = await build_reasoner_graph().ainvoke(
        {"question": "Tom has 3 boxes of 4 apples and eats 2. How many apples are left?"},
        context=reasoner_context(vllm_server, vllm_server),
    )
    after = vllm_server.counters(*COUNTERS)
    generated, prompted = (round(after[name] - before[name]) for name in COUNTERS)
    total = out["usage"]["total"]
    print(f"\nplan {out['plan']}; subtasks {[(s['id'], s['tier']) for s in out['subtasks']]}")
    print(f"usage {out['usage']}; vLLM counted {generated} generated, {prompted} prompted")
    assert out["plan"]["status"] in {"ok", "fallback"}, out["plan"]
    plan_and_summary = out["plan"]["attempts"] + 1
    assert total["calls"] == plan_and_summary + len(out["subtasks"]) + out["escalations"]
    assert generated == total["output_tokens"] and prompted == total["input_tokens"]
