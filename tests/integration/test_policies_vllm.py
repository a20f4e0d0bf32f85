"""Path confidence and the policies against the real vLLM server: its logprobs, its request
count."""

from __future__ import annotations

import json
import urllib.request

import pytest

from a2r_graph import graph
from a2r_graph.confidence import path_confidence, token_confidences
from a2r_graph.prompts import render_explorer_prompt

pytestmark = pytest.mark.integration
QUESTION = "What is 2 + 2? Put the final answer in \\boxed{}."
# Structured output makes every explorer write the same answer: paths that agree for sure.
AGREEING = {"structured_outputs": {"regex": r"The answer is \\boxed\{4\}\."}}


def chat(server, prompt: str, **body) -> dict:
    body = {"model": server.model_name, "messages": [{"role": "user", "content": prompt}], **body}
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


async def test_the_servers_logprobs_become_each_paths_confidence(vllm_server, context_for):
    confidence = {"top_logprobs": 5, "group_size": 4, "tail_tokens": 4}
    context = context_for(n=2, confidence=confidence)
    context = context.model_copy(
        update={"explorer": context.explorer.model_copy(update={"extra_body": AGREEING})}
    )
    result = await graph.ainvoke({"question": QUESTION}, context=context)

    reply = chat(  # the same request by hand: its logprobs, measured independently
        vllm_server,
        render_explorer_prompt(QUESTION),
        max_tokens=48,
        temperature=0.8,
        top_p=0.95,
        seed=1234,
        logprobs=True,
        top_logprobs=5,
        **AGREEING,
    )
    content = reply["choices"][0]["logprobs"]["content"]
    assert len(content) == reply["usage"]["completion_tokens"] and content[0]["top_logprobs"]
    expected = path_confidence(token_confidences(reply["choices"][0]["logprobs"]), 4, 4)
    for path in result["paths"]:
        assert path["answer"] == "The answer is \\boxed{4}."
        assert path["confidence"]["tokens"] == path["usage"]["output_tokens"] == len(content)
        for measure in ("mean", "lowest_group", "tail"):
            assert path["confidence"][measure] == pytest.approx(expected[measure], abs=0.05)
            assert path["confidence"][measure] > 0


async def test_the_shortcut_and_waves_really_skip_calls(vllm_server, context_for):
    def agreeing(**overrides):
        context = context_for(**overrides)
        explorer = context.explorer.model_copy(update={"extra_body": AGREEING})
        return context.model_copy(update={"explorer": explorer})

    before = vllm_server.requests_served()
    full = await graph.ainvoke({"question": QUESTION}, context=agreeing(n=3))
    after_full = vllm_server.requests_served()
    short = await graph.ainvoke({"question": QUESTION}, context=agreeing(n=3, shortcut=True))
    after_short = vllm_server.requests_served()
    waves = await graph.ainvoke(
        {"question": QUESTION}, context=agreeing(n=4, waves=[2], shortcut=True)
    )
    after_waves = vllm_server.requests_served()

    assert after_full - before == 4 and full["usage"]["synthesize"]["calls"] == 1
    assert after_short - after_full == 3  # the explorers only: no synthesizer request
    assert short["decisions"]["shortcut"] is True and short["synthesis"] is None
    assert short["boxed_answer"] == "4" and short["usage"]["total"]["calls"] == 3
    assert after_waves - after_short == 2  # one wave of two agreeing paths, nothing more
    assert waves["decisions"]["waves"] == [[0, 1]] and waves["boxed_answer"] == "4"


async def test_select_mode_answers_with_the_reference_the_real_selector_names(
    vllm_server, context_for
):
    """GenSelect on the real server: structured output makes the selector name reference 2;
    the run's answer is that reference's, in one synthesizer request."""
    context = context_for(n=2, synthesis_mode="select", references={"dedupe": False})
    explorer = context.explorer.model_copy(update={"extra_body": AGREEING})
    selector = context.synthesizer.model_copy(
        update={"extra_body": {"structured_outputs": {"regex": r"Candidate 2: \\boxed\{2\}"}}}
    )
    context = context.model_copy(update={"explorer": explorer, "synthesizer": selector})
    before = vllm_server.requests_served()
    result = await graph.ainvoke({"question": QUESTION}, context=context)
    assert vllm_server.requests_served() - before == 3
    assert result["synthesis"]["answer"] == "Candidate 2: \\boxed{2}"
    assert result["decisions"]["selected"] == 1  # the second reference is path 1
    assert result["answer"] == result["paths"][1]["answer"] and result["boxed_answer"] == "4"
