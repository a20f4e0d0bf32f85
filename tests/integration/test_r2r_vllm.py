"""R2R on the real vLLM server (one server plays both roles): the run's usage is what vLLM
counted, token for token, and vLLM's dialect (``token_id:N`` tokens, the stop token on the
last chunk) decodes to a clean answer."""

from __future__ import annotations

import asyncio

import pytest

from a2r_graph.r2r.graph import build_r2r_graph
from tests.integration.conftest import r2r_context

pytestmark = pytest.mark.integration

COUNTERS = ("vllm:generation_tokens_total", "vllm:prompt_tokens_total")


async def test_vllm_counts_what_the_run_reports(vllm_server):
    before = vllm_server.counters(*COUNTERS)
    out = await build_r2r_graph().ainvoke(
        {"question": "What is 6*7?"},
        context=r2r_context(vllm_server, vllm_server, threshold=1.5, max_tokens=64, top_k=5),
    )
    await asyncio.sleep(1.0)  # vLLM counts an aborted request once it has noticed
    after = vllm_server.counters(*COUNTERS)
    generated, prompted = (after[name] - before[name] for name in COUNTERS)
    total = out["usage"]["total"]
    print(f"\nvLLM: {out['switches']} switches, {out['tokens']}; usage {out['usage']}")
    assert out["switches"] >= 1
    assert out["usage"]["slm"]["calls"] == out["switches"] + (out["finish_reason"] == "stop")
    assert 0 <= generated - total["output_tokens"] <= 4 * out["switches"]
    assert prompted == total["input_tokens"]
    assert "<|im_end|>" not in out["answer"] and out["answer"].strip()
