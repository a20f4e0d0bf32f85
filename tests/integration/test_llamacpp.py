"""The llama.cpp engine's token counting against the real server: what the overflow policy
counts for a synthesizer prompt is what the server then bills for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from a2r_graph.calls import complete
from a2r_graph.chat_models import vllm_chat_model
from a2r_graph.context import StageConfig
from a2r_graph.endpoint import count_prompt_tokens
from a2r_graph.prompts import render_synthesizer_prompt
from servers.engines import EmbeddedLlamaCpp
from tests.fakes import make_context

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llamacpp() -> Iterator[EmbeddedLlamaCpp]:
    with EmbeddedLlamaCpp("smollm2-135m") as server:
        yield server


async def test_prompt_tokens_are_counted_as_llamacpp_bills_them(llamacpp):
    stage = StageConfig(base_url=llamacpp.base_url, model=llamacpp.model_name, max_tokens=2)
    answers = ["Six sevens: 6*7 = \\boxed{42}", "Adding 7 six times gives \\boxed{42}."]
    prompt = render_synthesizer_prompt("What is 6*7?", answers)

    counted = await count_prompt_tokens(stage, prompt, 60)
    context = make_context(explorer=stage, synthesizer=stage)
    billed = await complete(vllm_chat_model(stage, 60), prompt, "synthesizer", stage, context)

    assert counted == billed["usage"]["input_tokens"] > len(prompt) // 8
