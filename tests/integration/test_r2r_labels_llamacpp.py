"""The trained router's labels against a real llama.cpp server playing both roles
(smollm2-135m): the mechanics, not the labels' quality. One model scoring its own greedy
answer agrees with it at every position, so a misaligned scoring shows as candidates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from a2r_graph.r2r import command
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.labels import IDENTICAL, LabelSettings, greedy
from servers.engines import EmbeddedLlamaCpp

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llamacpp() -> Iterator[EmbeddedLlamaCpp]:
    with EmbeddedLlamaCpp("smollm2-135m", slots=1) as server:
        yield server


async def test_a_model_scoring_its_own_greedy_answer_agrees_at_every_position(llamacpp):
    """Catches: the LLM's top-1 read one position off (or from the wrong prefix) on llama.cpp,
    whose per-position scoring calls replace vLLM's prompt_logprobs; the SLM's answer not
    greedy (labels of a sampled answer); the router's view (top-k, positions) lost."""
    stage = {"base_url": llamacpp.base_url, "model": llamacpp.model_name, "temperature": 0.7}
    context = greedy(
        R2RContext(explorer=stage, synthesizer=stage, r2r={"top_k": 5}, request_timeout_s=120)
    )
    labelled = await command.label_all(
        [("q1", "What is 6*7?"), ("q2", "Name a prime number above 10.")],
        context,
        LabelSettings(max_tokens=24, judge_per_question=1),
    )
    for labels in labelled:
        print(f"\n{labels.question_id}: {len(labels.kinds)} tokens, kinds {set(labels.kinds)}")
        assert 1 <= len(labels.tokens) <= 24
        assert [t.position for t in labels.tokens] == list(range(len(labels.tokens)))
        assert all(1 <= len(t.top) <= 5 for t in labels.tokens)
        assert labels.llm_calls == len(labels.tokens)  # llama.cpp: a call per position
        assert labels.kinds.count(IDENTICAL) >= len(labels.kinds) - 1  # fp ties at most
