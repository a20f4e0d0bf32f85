"""The overflow policy against the real vLLM server: its window, its tokenizer, its 400."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from a2r_graph import build_graph
from a2r_graph.errors import ContextOverflowError
from a2r_graph.prompts import render_explorer_prompt, render_synthesizer_prompt

pytestmark = pytest.mark.integration
QUESTION = "Write out, step by step, how to add 123456 and 654321."


def long_run_context(context_for, **overrides):
    """Explorers that write a lot and a synthesizer whose max_tokens fill most of the window
    (it stops at its first newline, to keep the CPU run short)."""
    return context_for(
        n=4,
        explorer={**context_for().explorer.model_dump(mode="json"), "max_tokens": 200},
        synthesizer={
            **context_for().synthesizer.model_dump(mode="json"),
            "max_tokens": 1600,
            "extra_body": {"stop": ["\n"]},
        },
        **overrides,
    )


async def test_references_are_truncated_to_fit_and_the_call_succeeds(vllm_server, context_for):
    context = long_run_context(context_for)
    graph = build_graph(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "fit"}}
    result = await graph.ainvoke({"question": QUESTION}, config, context=context)

    usable = [p["answer"] for p in result["paths"] if p["error"] is None]
    whole, window = vllm_server.count_prompt(render_synthesizer_prompt(QUESTION, usable))
    assert whole + 1600 > window, "precondition: the untruncated references overflow"

    fit = result["reference_fit"]
    assert fit["context_window"] == window  # read from the server's /v1/models
    assert fit["truncated"] or fit["dropped"], fit
    prompt = (await graph.aget_state(config)).values["synthesizer_prompt"]
    assert vllm_server.count_prompt(prompt)[0] == fit["prompt_tokens"] <= window - 1600
    assert result["synthesis"]["usage"]["input_tokens"] == fit["prompt_tokens"]
    for path in result["paths"]:  # each reference kept still ends as its path's answer ends
        if path["error"] is None and path["index"] not in fit["dropped"]:
            assert path["answer"][-100:] in prompt


async def test_error_policy_stops_before_any_synthesizer_call(vllm_server, context_for):
    before = vllm_server.token_counters()
    with pytest.raises(ContextOverflowError, match="context window") as caught:
        await build_graph().ainvoke(
            {"question": QUESTION}, context=long_run_context(context_for, overflow="error")
        )
    assert "set overflow to 'truncate' or 'drop'" in str(caught.value)
    # vLLM saw the 4 explorer prompts and nothing else.
    explorer_prompt = render_explorer_prompt(QUESTION)
    prompt_tokens = vllm_server.token_counters()["vllm:prompt_tokens_total"]
    assert (
        prompt_tokens - before["vllm:prompt_tokens_total"]
        == 4 * vllm_server.count_prompt(explorer_prompt)[0]
    )
