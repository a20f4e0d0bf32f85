import pytest

from a2r_graph.answers import last_boxed, split_reasoning


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"first \boxed{1} then \boxed{2}", "2"),
        (r"\boxed{ x^{2} + \sqrt{y} }", r"x^{2} + \sqrt{y}"),
        (r"set \boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\fbox{7}", "7"),
        (r"\boxed {3}", "3"),
        (r"answer is \boxed 5.", "5."),
        ("no box at all", None),
        (r"\boxed{12} and a truncated \boxed{3", "12"),
        (r"only truncated \boxed{3", None),
        ("", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_reasoning_field_is_the_trace_and_content_the_answer():
    assert split_reasoning("A: \\boxed{1}", "long thought") == ("long thought", "A: \\boxed{1}")


def test_inline_think_block_is_stripped_from_the_answer():
    trace, answer = split_reasoning("<think>\nstep 1\nstep 2\n</think>\n\nSo \\boxed{3}")
    assert trace == "step 1\nstep 2"
    assert answer == "So \\boxed{3}"


def test_closing_tag_without_opening_tag():
    # Qwen3-style templates put <think> in the prompt, so only </think> comes back.
    assert split_reasoning("reasoning here</think>answer") == ("reasoning here", "answer")


def test_unclosed_think_means_no_answer():
    assert split_reasoning("<think>ran out of tokens mid-thought") == (
        "ran out of tokens mid-thought",
        "",
    )


def test_no_thinking_is_all_answer():
    assert split_reasoning("  plain answer \\boxed{2} ") == ("", "plain answer \\boxed{2}")
