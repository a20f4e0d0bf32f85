"""Prompts given as text (``A2RContext.prompts``) are what the real vLLM server receives."""

from __future__ import annotations

import pytest

from a2r_graph import build_graph
from a2r_graph.prompts import render_explorer_prompt

pytestmark = pytest.mark.integration
QUESTION = "What is 2 + 3?"


async def test_the_explorer_prompt_text_is_what_vllm_prefills(vllm_server, context_for):
    text = "Think about this twice, in short sentences, then box it: {question}"
    base = context_for(n=2)
    context = base.model_copy(
        update={
            "prompts": type(base.prompts)(explorer=text),
            "explorer": base.explorer.model_copy(update={"max_tokens": 16}),
            "synthesizer": base.synthesizer.model_copy(update={"max_tokens": 16}),
        }
    )
    result = await build_graph().ainvoke({"question": QUESTION}, context=context)
    expected = vllm_server.count_prompt(text.replace("{question}", QUESTION))[0]
    packaged = vllm_server.count_prompt(render_explorer_prompt(QUESTION))[0]
    assert expected != packaged  # precondition: the two prompts differ in length
    # the server's own count of each explorer's prompt is the custom prompt's
    assert [p["usage"]["input_tokens"] for p in result["paths"]] == [expected, expected]
