"""The overflow policy: references made to fit the synthesizer's context window."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2r_graph.errors import ContextOverflowError
from a2r_graph.fit import MIN_REFERENCE_CHARS, TEMPLATE_MARGIN, TRUNCATION_MARK, fit_references
from a2r_graph.prompts import render_synthesizer_prompt
from tests.fakes import make_context

QUESTION = "What is 6*7?"


class WordCounter:
    """A tokenizer route that counts words (like the loopback server) and its calls."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, prompt: str) -> int:
        self.calls += 1
        return len(prompt.split())


def reference(index: int, words: int) -> tuple[int, str]:
    return index, " ".join(["step"] * words) + f" so the answer is \\boxed{{{index}}}"


def context(max_tokens=100, overflow="truncate"):
    return make_context(synthesizer={"model": "s", "max_tokens": max_tokens}, overflow=overflow)


async def test_unknown_window_sends_the_prompt_as_built():
    refs = [reference(0, 5000)]
    prompt, fit = await fit_references(QUESTION, refs, context(), None, WordCounter())
    assert prompt == render_synthesizer_prompt(QUESTION, [refs[0][1]])
    assert fit == {
        "context_window": None,
        "prompt_tokens": None,
        "policy": "truncate",
        "truncated": [],
        "dropped": [],
    }


async def test_a_prompt_that_fits_by_its_bytes_is_not_counted():
    counter = WordCounter()
    refs = [reference(0, 10), reference(1, 10)]
    prompt, fit = await fit_references(QUESTION, refs, context(), 4096, counter)
    assert counter.calls == 0 and fit["prompt_tokens"] is None
    assert prompt == render_synthesizer_prompt(QUESTION, [a for _, a in refs])


async def test_truncate_cuts_the_longest_from_the_front_and_keeps_their_answers():
    counter = WordCounter()
    refs = [reference(0, 30), reference(1, 2000), reference(2, 1500)]
    prompt, fit = await fit_references(QUESTION, refs, context(), 2000, counter)
    assert fit["prompt_tokens"] == len(prompt.split()) <= 2000 - 100
    assert fit["truncated"] == [1, 2] and fit["dropped"] == []
    assert refs[0][1] in prompt  # the short one is whole
    for i in range(3):
        assert f"so the answer is \\boxed{{{i}}}\n</reference{i + 1}>" in prompt
    assert prompt.count(TRUNCATION_MARK) == 2


async def test_drop_leaves_out_the_longest():
    refs = [reference(0, 30), reference(1, 2000), reference(2, 40)]
    prompt, fit = await fit_references(
        QUESTION, refs, context(overflow="drop"), 1000, WordCounter()
    )
    assert fit["dropped"] == [1] and fit["truncated"] == []
    assert prompt == render_synthesizer_prompt(QUESTION, [refs[0][1], refs[2][1]])


async def test_error_policy_names_the_sizes_and_the_fixes():
    refs = [reference(0, 3000)]
    with pytest.raises(ContextOverflowError) as caught:
        await fit_references(QUESTION, refs, context(overflow="error"), 2000, WordCounter())
    message = str(caught.value)
    assert "needs 3" in message and "only 1900 of the 2000-token context window" in message
    assert "set overflow to 'truncate' or 'drop'" in message


async def test_max_tokens_that_fill_the_window_are_an_error_before_any_call():
    counter = WordCounter()
    with pytest.raises(ContextOverflowError, match=r"max_tokens \(2000\) leaves no room"):
        await fit_references(QUESTION, [reference(0, 1)], context(max_tokens=2000), 2000, counter)
    assert counter.calls == 0


async def test_a_question_too_long_for_the_window_cannot_be_fitted():
    refs = [reference(0, 10)]
    question = "word " * 5000
    with pytest.raises(ContextOverflowError, match="serve the synthesizer with a larger"):
        await fit_references(question, refs, context(), 2000, WordCounter())


async def test_without_a_tokenizer_route_one_token_per_byte_is_assumed():
    async def no_route(prompt):
        return None

    refs = [reference(0, 400), reference(1, 400)]
    prompt, fit = await fit_references(QUESTION, refs, context(), 2000, no_route)
    assert len(prompt.encode()) + TEMPLATE_MARGIN == fit["prompt_tokens"] <= 1900
    assert fit["truncated"] == [0, 1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=8),
    window=st.integers(min_value=600, max_value=6000),
    overflow=st.sampled_from(["truncate", "drop"]),
)
async def test_any_references_fit_or_fail_clearly(lengths, window, overflow):
    refs = [reference(i, n) for i, n in enumerate(lengths)]
    try:
        prompt, fit = await fit_references(
            QUESTION, refs, context(overflow=overflow), window, WordCounter()
        )
    except ContextOverflowError as error:
        assert "context window" in str(error)
        # Only when even the smallest prompt the policy may build does not fit: the shortest
        # reference alone, cut to the floor when truncating.
        shortest = min((answer for _, answer in refs), key=len)
        if overflow == "truncate" and len(shortest) > MIN_REFERENCE_CHARS + len(TRUNCATION_MARK):
            shortest = TRUNCATION_MARK + shortest[-MIN_REFERENCE_CHARS:]
        smallest = render_synthesizer_prompt(QUESTION, [shortest])
        assert len(smallest.split()) > window - 100, "it failed where a prompt fits"
        return
    assert len(prompt.split()) <= window - 100
    kept = [i for i, _ in refs if i not in fit["dropped"]]
    assert prompt.count("</reference") == len(kept) >= 1
    for k, i in enumerate(kept, 1):  # every kept reference still ends in its answer
        assert f"\\boxed{{{i}}}\n</reference{k}>" in prompt
    for i in fit["truncated"]:
        assert len(refs[i][1]) > MIN_REFERENCE_CHARS
