"""Property tests (hypothesis): answer extraction and the reference builder on arbitrary text."""

import re

from hypothesis import given
from hypothesis import strategies as st

from a2r_graph.answers import last_boxed, split_reasoning
from a2r_graph.prompts import format_references, render_synthesizer_prompt

# Text with no backslash or brace: it cannot open, close or escape a box.
plain = st.text(alphabet=st.characters(blacklist_characters="\\{}"), max_size=60)
# Brace-balanced LaTeX-ish content: what a well-formed \boxed{} holds.
balanced = st.recursive(
    plain, lambda inner: st.builds(lambda a, b: a + "{" + b + "}", inner, inner), max_leaves=8
)
no_tags = st.text(max_size=200).filter(lambda t: "<reference" not in t and "</reference" not in t)


@given(prefix=st.text(max_size=200), content=balanced, suffix=plain)
def test_last_boxed_returns_the_last_well_formed_box(prefix, content, suffix):
    assert last_boxed(f"{prefix}\\boxed{{{content}}}{suffix}") == content.strip()


@given(text=st.text(max_size=400))
def test_last_boxed_never_raises_and_returns_balanced_content(text):
    found = last_boxed(text)
    if found is not None:
        unescaped = re.sub(r"\\[{}]", "", found)
        assert unescaped.count("{") == unescaped.count("}") or "\\boxed " in text


@given(
    trace=st.text(max_size=200).filter(lambda t: "<think>" not in t and "</think>" not in t),
    answer=st.text(max_size=200).filter(lambda t: "</think>" not in t),
)
def test_inline_think_block_splits_into_trace_and_answer(trace, answer):
    assert split_reasoning(f"<think>{trace}</think>{answer}") == (trace.strip(), answer.strip())


@given(answers=st.lists(no_tags, max_size=8))
def test_reference_block_holds_each_answer_in_order_under_its_number(answers):
    block = format_references(answers)
    found = re.findall(r"<reference(\d+)>\n(.*?)\n</reference\1>", block, re.DOTALL)
    assert [int(k) for k, _ in found] == list(range(1, len(answers) + 1))
    assert [text for _, text in found] == [a.strip() for a in answers]


@given(question=st.text(min_size=1, max_size=200), answers=st.lists(no_tags, max_size=4))
def test_synthesizer_prompt_keeps_the_question_verbatim(question, answers):
    prompt = render_synthesizer_prompt(question, answers)
    assert question in prompt
    assert prompt.endswith(format_references(answers))
