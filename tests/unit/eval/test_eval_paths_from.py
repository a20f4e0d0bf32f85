"""``--paths-from``: another synthesis over the explorer samples an earlier eval saved, without
calling the explorer again, their tokens and cost counted as when they were sampled."""

from __future__ import annotations

import json

import pytest

from a2r_graph import threads
from a2r_graph.eval.data import load_problems
from a2r_graph.eval.results import ResultLine, read_results
from a2r_graph.eval.runner import run_eval
from a2r_graph.eval.verify import Verifier
from a2r_graph.graph import build_graph
from a2r_graph.serving.cli import main
from tests.eval_fakes import explorer_script, needs, write_jsonl
from tests.fakes import factory, make_context, reply, scripted
from tests.result_lines import as_json, result_line, saved_path, synthesis


async def first_eval(tmp_path, problems, context) -> ResultLine:
    """An eval of ``problems`` (of which one line is returned) whose 4 paths answer 1, 2, 2,
    7 and whose synthesis answers 1."""
    first_dir = tmp_path / "first"
    async with threads.sqlite_checkpointer(tmp_path / "first.sqlite") as checkpointer:
        explorer = scripted(*explorer_script(4, ["1", "2", "2", "7"]))
        graph = build_graph(
            factory(explorer, scripted(reply("\\boxed{1}"))), checkpointer=checkpointer
        )
        with Verifier(timeout_s=60) as verifier:
            await run_eval(
                graph, problems, ns=(4,), context=context, out_dir=first_dir, verifier=verifier
            )
    [first] = read_results(first_dir / "results.jsonl")
    return first


async def second_eval(tmp_path, problems, context, first, replies, **options):
    """An eval over ``first``'s saved paths with the ``tally`` variant, the synthesizer
    answering ``replies`` (returned, with its calls) and no explorer call allowed."""
    async with threads.sqlite_checkpointer(tmp_path / "second.sqlite") as checkpointer:
        explorer = scripted()  # any explorer call would fail the problem
        synthesizer = scripted(*map(reply, replies))
        graph = build_graph(factory(explorer, synthesizer), checkpointer=checkpointer)
        with Verifier(timeout_s=60) as verifier:
            await run_eval(
                graph,
                problems,
                ns=(4,),
                context=context,
                out_dir=tmp_path / "second",
                verifier=verifier,
                variants=["tally"],
                saved={first.key: first},
                **options,
            )
    assert explorer.calls == []
    return synthesizer


async def test_a_second_eval_synthesizes_over_the_first_ones_paths(tmp_path):
    needs("math_verify")
    source = write_jsonl(tmp_path, [("a", "What is 1+1?", "2"), ("b", "What is 2+2?", "4")])
    problems = load_problems(str(source))
    context = make_context(n=4)
    first = await first_eval(tmp_path, problems[:1], context)  # only "a" finishes there
    synthesizer = await second_eval(
        tmp_path, problems, context, first, ["\\boxed{2}", "\\boxed{7}"]
    )
    [prompt, tally_prompt] = [prompt for prompt, _ in synthesizer.calls]
    assert "<reference4>" in prompt and "\\boxed{7}" in prompt  # the saved answers
    assert "2 (2 of 4), 1 (1 of 4), 7 (1 of 4)" in tally_prompt  # the tally of the saved answers
    [line] = read_results(tmp_path / "second" / "results.jsonl")  # "b" had no paths: left out
    assert line.key == first.key
    assert [p.boxed for p in line.paths] == [p.boxed for p in first.paths]
    cell = line.by_n["4"]
    assert cell.a2r_boxed == "2" and cell.a2r_correct is True
    assert cell.cons_correct is True and cell.pass_at_n == 1.0
    assert cell.explore_usage == first.by_n["4"].explore_usage  # counted, not re-paid
    assert line.policies["tally"].boxed == "7"


GOOD_LINE = as_json(result_line())
FOREIGN = "earlier/results.jsonl, line 1 is not a line of a2r eval's results"


@pytest.mark.parametrize(
    ("saved", "out_is_source", "message"),
    [
        (
            GOOD_LINE | {"k": 2},
            False,
            "sampled 2 paths per problem, this eval --n 4: use the same --n",
        ),
        ({k: v for k, v in GOOD_LINE.items() if k != "k"}, False, f"{FOREIGN} (k: Field required)"),
        (GOOD_LINE | {"paths": [1]}, False, f"{FOREIGN} (paths.0: Input should be"),
        (
            GOOD_LINE | {"paths": [{"index": 0, "boxed": "2"}]},
            False,
            f"{FOREIGN} (paths.0.answer: Field required; paths.0.error: Field required; "
            "paths.0.usage: Field required; 1 more)",
        ),
        (
            GOOD_LINE | {"paths": [as_json(saved_path()) | {"usage": None}]},
            False,
            f"{FOREIGN} (paths.0.usage: Input should be an object)",
        ),
        ('{"key": "a#0", "torn', False, "line 1 is not JSON (cut off by a crash?): delete"),
        (GOOD_LINE, True, "--paths-from must name another eval's directory than --out"),
        (None, False, "earlier/results.jsonl does not exist"),
    ],
)
def test_paths_that_do_not_fit_the_eval_are_refused(
    tmp_path, monkeypatch, capsys, saved, out_is_source, message
):
    needs("math_verify", "matplotlib", "reasoning_gym", "tqdm")
    monkeypatch.setenv("A2R_EXPLORER__MODEL", "e")
    monkeypatch.setenv("A2R_SYNTHESIZER__MODEL", "s")
    source = write_jsonl(tmp_path, [("a", "What is 1+1?", "2")])
    earlier = tmp_path / "earlier"
    if saved is not None:
        earlier.mkdir()
        text = saved if isinstance(saved, str) else json.dumps(saved)
        (earlier / "results.jsonl").write_text(text + "\n")
    out = earlier if out_is_source else tmp_path / "out"
    args = ["eval", str(source), "--n", "4", "--paths-from", str(earlier), "--out", str(out)]
    assert main(args) == 2
    assert message in capsys.readouterr().err


async def test_kept_syntheses_run_only_the_variants(tmp_path):
    needs("math_verify")
    source = write_jsonl(tmp_path, [("a", "What is 1+1?", "2")])
    problems = load_problems(str(source))
    context = make_context(n=4)
    first = await first_eval(tmp_path, problems, context)
    # the variant only
    synthesizer = await second_eval(
        tmp_path, problems, context, first, ["\\boxed{2}"], keep_syntheses=True
    )
    [(tally_prompt, _)] = synthesizer.calls
    assert "2 (2 of 4), 1 (1 of 4), 7 (1 of 4)" in tally_prompt
    [line] = read_results(tmp_path / "second" / "results.jsonl")
    assert line.paths == first.paths and line.by_n == first.by_n
    assert line.by_n["4"].a2r_boxed == "1"  # the kept synthesis, not run again
    assert line.policies == {**first.policies, "tally": line.policies["tally"]}
    tally = line.policies["tally"]
    assert tally.boxed == "2" and tally.correct is True
    explored = first.by_n["4"].explore_usage
    assert tally.usage.input_tokens > explored.input_tokens  # paths + its synthesis


KEPT_LINE = GOOD_LINE | {"by_n": {"4": as_json(synthesis())}}


@pytest.mark.parametrize(
    ("extra", "saved", "model", "message"),
    [
        ([], KEPT_LINE, "e -> s", "--keep-syntheses runs only the --variants: name at least one"),
        (["--variants", "tally", "--alone", "2"], KEPT_LINE, "e -> s", "drop --alone"),
        (["--variants", "tally"], KEPT_LINE, "e -> other", "names synthesizer 'other', this eval"),
        (["--variants", "tally"], KEPT_LINE, None, "names synthesizer 'none'"),
        (["--variants", "tally"], KEPT_LINE, "{torn", "names synthesizer 'none'"),
        (["--variants", "tally"], KEPT_LINE, ["e -> s"], "names synthesizer 'none'"),
        (["--variants", "tally"], GOOD_LINE, "e -> s", "no synthesis at N=4 for a#0"),
        (["--variants", "tally"], KEPT_LINE | {"policies": []}, "e -> s", "policies: Input"),
        (
            ["--variants", "tally"],
            KEPT_LINE | {"verify_timeouts": "1"},
            "e -> s",
            f"{FOREIGN} (verify_timeouts: Input should be a valid integer)",
        ),
    ],
)
def test_syntheses_that_cannot_be_kept_are_refused(
    tmp_path, monkeypatch, capsys, extra, saved, model, message
):
    needs("math_verify", "matplotlib", "reasoning_gym", "tqdm")
    monkeypatch.setenv("A2R_EXPLORER__MODEL", "e")
    monkeypatch.setenv("A2R_SYNTHESIZER__MODEL", "s")
    source = write_jsonl(tmp_path, [("a", "What is 1+1?", "2")])
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "results.jsonl").write_text(json.dumps(saved) + "\n")
    if isinstance(model, str) and model.startswith("{"):
        (earlier / "results.json").write_text(model)
    elif model is not None:
        (earlier / "results.json").write_text(json.dumps({"model": model}))
    args = ["eval", str(source), "--n", "4", "--out", str(tmp_path / "out")]
    assert main([*args, "--paths-from", str(earlier), "--keep-syntheses", *extra]) == 2
    assert message in capsys.readouterr().err
    assert main([*args, "--keep-syntheses", "--variants", "tally"]) == 2
    assert "--keep-syntheses keeps the syntheses of --paths-from DIR" in capsys.readouterr().err
