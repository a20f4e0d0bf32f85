import pytest

from a2r_graph.prompts import (
    format_references,
    load_prompt,
    render_explorer_prompt,
    render_synthesizer_prompt,
)


def test_references_use_the_papers_tags_in_order():
    assert format_references(["a \\boxed{1}", " b "]) == (
        "<reference1>\na \\boxed{1}\n</reference1>\n<reference2>\nb\n</reference2>"
    )


def test_synthesizer_prompt_has_instruction_question_and_every_reference():
    prompt = render_synthesizer_prompt("What is 1+1?", ["A1", "A2", "A3"])
    assert "\\boxed{}" in prompt  # the instruction
    assert "What is 1+1?" in prompt
    for k, answer in enumerate(["A1", "A2", "A3"], 1):
        assert f"<reference{k}>\n{answer}\n</reference{k}>" in prompt
    assert prompt.index("What is 1+1?") < prompt.index("<reference1>")


def test_placeholders_in_the_question_are_not_expanded():
    prompt = render_synthesizer_prompt("echo {references} and {question}", ["A"])
    assert "echo {references} and {question}" in prompt
    assert prompt.count("<reference1>") == 1


def test_latex_braces_in_prompt_files_are_literal():
    assert render_explorer_prompt("Q").endswith("within \\boxed{}.")


def test_prompts_dir_overrides_one_file_and_keeps_the_other(tmp_path):
    (tmp_path / "explorer.txt").write_text("Solve: {question}")
    assert render_explorer_prompt("2+2", tmp_path) == "Solve: 2+2"
    assert "<reference1>" in render_synthesizer_prompt("q", ["a"], tmp_path)


def test_prompt_file_without_its_placeholder_is_rejected_with_the_fix(tmp_path):
    (tmp_path / "synthesizer.txt").write_text("Question: {question}")
    with pytest.raises(
        ValueError, match=r"synthesizer.txt lacks the placeholder\(s\) \{references\}"
    ):
        load_prompt("synthesizer", tmp_path)
