import pytest
from pydantic import ValidationError

from a2r_graph import build_graph
from a2r_graph.errors import ConfigurationError
from a2r_graph.prompts import (
    check_prompts_dir,
    format_references,
    load_prompt,
    render_explorer_prompt,
    render_synthesizer_prompt,
)
from a2r_graph.serving.run_options import RunOptions
from tests.fakes import explorer_replies, factory, make_context, reply, scripted


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


def test_a_missing_prompts_dir_is_an_error_not_the_packaged_prompts(tmp_path):
    with pytest.raises(ValueError, match=r"prompts_dir .*missing does not exist"):
        render_explorer_prompt("Q", tmp_path / "missing")
    (tmp_path / "a-file").write_text("Solve: {question}")
    with pytest.raises(ValueError, match=r"prompts_dir .*a-file is not a directory"):
        render_synthesizer_prompt("Q", ["A"], tmp_path / "a-file")


def test_check_prompts_dir_loads_every_prompt_the_directory_holds(tmp_path):
    (tmp_path / "explorer.txt").write_text("Solve: {question}")
    assert check_prompts_dir(tmp_path) == tmp_path  # synthesizer.txt: the packaged one
    (tmp_path / "synthesizer.txt").write_bytes(b"\xff{question} {references}")
    with pytest.raises(ValueError, match="synthesizer.txt cannot be read as UTF-8 text"):
        check_prompts_dir(tmp_path)


async def test_the_graph_fails_on_broken_prompts_before_any_explorer_call(tmp_path):
    (tmp_path / "synthesizer.txt").write_text("Question: {question}")  # no {references}
    explorer = scripted(*explorer_replies(2))
    graph = build_graph(factory(explorer, scripted()))
    fields = {
        "explorer": {"model": "explorer-model"},
        "synthesizer": {"model": "synthesizer-model"},
    }
    with pytest.raises(ValidationError, match=r"lacks the placeholder\(s\) \{references\}"):
        await graph.ainvoke({"question": "Q"}, context={**fields, "prompts_dir": tmp_path})
    # a context copied with an unchecked prompts_dir (model_copy does not validate)
    unchecked = make_context(n=2).model_copy(update={"prompts_dir": tmp_path})
    with pytest.raises(ConfigurationError, match=r"prompts_dir: .*lacks the placeholder"):
        await graph.ainvoke({"question": "Q"}, context=unchecked)
    # edited after the context was checked
    (tmp_path / "synthesizer.txt").write_text("Question: {question}\n{references}")
    checked = make_context(n=2, prompts_dir=tmp_path)
    (tmp_path / "synthesizer.txt").write_text("Question: {question}, and no references")
    with pytest.raises(ConfigurationError, match=r"prompts_dir: .*lacks the placeholder"):
        await graph.ainvoke({"question": "Q"}, context=checked)
    gone = make_context(n=2).model_copy(update={"prompts_dir": tmp_path / "gone"})
    with pytest.raises(ConfigurationError, match="does not exist"):
        await graph.ainvoke({"question": "Q"}, context=gone)
    assert explorer.calls == []


async def test_prompts_given_as_text_win_and_a_server_run_may_set_them(tmp_path):
    (tmp_path / "synthesizer.txt").write_text("From the directory: {question}\n{references}")
    texts = {
        "explorer": "Work it out: {question}",
        "synthesizer": "Check these for {question}:\n{references}\nBox the answer.",
    }
    explorer = scripted(*explorer_replies(2))
    synthesizer = scripted(reply("\\boxed{1}"))
    graph = build_graph(factory(explorer, synthesizer))
    context = make_context(n=2, prompts_dir=tmp_path, prompts=texts)
    await graph.ainvoke({"question": "What is 1?"}, context=context)
    assert [prompt for prompt, _ in explorer.calls] == ["Work it out: What is 1?"] * 2
    [(prompt, _)] = synthesizer.calls
    assert prompt.startswith("Check these for What is 1?:\n<reference1>")
    assert prompt.endswith("</reference2>\nBox the answer.")
    # an assistant's or a run's options carry them (LangGraph Server)
    options = RunOptions.model_validate({"prompts": {"explorer": "Solve: {question}"}})
    assert options.prompts.explorer == "Solve: {question}"


def test_a_prompt_text_without_its_placeholders_is_refused_with_the_fix():
    with pytest.raises(ValidationError, match=r"prompts.selector lacks .*\{references\}: add"):
        make_context(prompts={"selector": "Pick one for {question}"})
    with pytest.raises(ValidationError, match="at most 20000 characters"):
        make_context(prompts={"explorer": "{question}" + "x" * 20_000})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make_context(prompts={"verifier": "{question}"})
