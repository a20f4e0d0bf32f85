"""The evaluation harness: metrics, math-verify in a process pool, data sources, resume, report."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from a2r_graph import build_graph, threads
from a2r_graph.eval.data import DataError, Fields, Problem, load_problems
from a2r_graph.eval.metrics import majority_vote, pass_at_1, pass_at_n
from a2r_graph.eval.report import markdown_table, plot_accuracy_vs_cost, summarize
from a2r_graph.eval.results import RESULTS_FILE, read_results
from a2r_graph.eval.runner import run_eval
from a2r_graph.eval.verify import Verifier
from tests.eval_fakes import explorer_script, needs, write_jsonl
from tests.fakes import factory, make_context, reply, scripted
from tests.result_lines import result_line, saved_path, synthesis


@pytest.fixture(scope="module")
def verifier():
    needs("math_verify")
    with Verifier(timeout_s=60) as verifier:
        yield verifier


async def test_equivalent_answers_are_one_vote(verifier):
    answers = ["2", "\\frac12", "0.5", None, "1/2", "2", ""]
    assert await majority_vote(answers, verifier.correct) == "\\frac12"  # 3 votes to 2


async def test_a_tie_goes_to_the_group_that_came_first(verifier):
    assert await majority_vote(["3", "2", "2", "3.0"], verifier.correct) == "3"
    assert await majority_vote(["2", "3", "3.0", "2"], verifier.correct) == "2"
    assert await majority_vote([None, " "], verifier.correct) is None


async def test_correctness_is_math_equivalence_with_the_gold_answer_first(verifier):
    assert await verifier.correct("0.5", "\\frac{1}{2}")
    assert await verifier.correct("1/2", "0.5")
    assert not await verifier.correct("0.5", "2")
    assert not await verifier.correct("42", None)


def test_pass_at_1_and_pass_at_n():
    assert pass_at_1([True, False, False, True]) == 0.5
    assert pass_at_n([False, False, True], 2) is False
    assert pass_at_n([False, False, True], 3) is True


def test_files_with_their_own_field_names(tmp_path):
    needs("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"qid": "a", "question": "1+1?", "gold": 2},
        {"qid": "b", "question": "2+2?", "gold": 4},
    ]
    fields = Fields(id="qid", problem="question", answer="gold")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    with open(tmp_path / "p.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["qid", "question", "gold"])
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    for name in ("p.jsonl", "p.csv", "p.parquet"):
        problems = load_problems(str(tmp_path / name), fields)
        assert [(p.id, p.problem, p.answer) for p in problems] == [
            ("a", "1+1?", "2"),
            ("b", "2+2?", "4"),
        ]
    with pytest.raises(DataError, match="no 'problem' or 'answer' field .* --problem-field"):
        load_problems(str(jsonl))
    with pytest.raises(DataError, match="no such data file"):
        load_problems(str(tmp_path / "missing.jsonl"))


def test_builtin_generators_are_seeded_and_offline():
    needs("reasoning_gym")
    first = load_problems("builtin:gsm_symbolic", size=5, seed=3)
    assert len(first) == 5 and first == load_problems("builtin:gsm_symbolic", size=5, seed=3)
    assert first != load_problems("builtin:gsm_symbolic", size=5, seed=4)
    assert all(p.answer.lstrip("-").isdigit() for p in first)
    with pytest.raises(DataError, match="not a reasoning-gym generator"):
        load_problems("builtin:nope", size=1)


def test_builtin_generators_mix_in_turn_with_size_problems_each():
    needs("reasoning_gym")
    mixed = load_problems("builtin:gsm_symbolic,number_sequence", size=3, seed=2)
    assert [p.group for p in mixed] == ["gsm_symbolic", "number_sequence"] * 3
    alone = load_problems("builtin:number_sequence", size=3, seed=2)
    assert [p for p in mixed if p.group == "number_sequence"] == alone
    with pytest.raises(DataError, match="builtin:nope: not a reasoning-gym .* comma-separated"):
        load_problems("builtin:gsm_symbolic,nope", size=1)


async def evaluate(tmp_path, problems, explorer, synthesizer, ns=(1, 2, 4)):
    needs("math_verify")
    async with threads.sqlite_checkpointer(tmp_path / "threads.sqlite") as checkpointer:
        graph = build_graph(factory(explorer, synthesizer), checkpointer=checkpointer)
        with Verifier(timeout_s=60) as verifier:
            return await run_eval(
                graph,
                problems,
                ns=ns,
                context=make_context(n=4),
                out_dir=tmp_path,
                concurrency=1,
                verifier=verifier,
            )


async def test_metrics_per_n_reuse_the_same_explorer_samples(tmp_path):
    problems = load_problems(str(write_jsonl(tmp_path, [("a", "q1", "2")])))
    explorer = scripted(*explorer_script(4, ["1", "2", "2", "0.5"]))
    synthesizer = scripted(reply("\\boxed{2}"), reply("\\boxed{1}"), reply("\\boxed{2}"))
    path = await evaluate(tmp_path, problems, explorer, synthesizer)

    assert len(explorer.calls) == 4 and len(synthesizer.calls) == 3  # K once, a synthesis per N
    [line] = read_results(path)
    assert [p.correct for p in line.paths] == [False, True, True, False]
    by_n = line.by_n
    assert (by_n["1"].cons_correct, by_n["1"].pass_at_n) == (False, False)
    assert (by_n["2"].cons_answer, by_n["2"].pass_at_n) == ("1", True)  # tie: first group
    assert (by_n["4"].cons_answer, by_n["4"].cons_correct) == ("2", True)
    # synthesizer calls: N=4 (the graph run), then N=1 and N=2 over the same first paths
    assert [by_n[n].a2r_correct for n in ("4", "1", "2")] == [True, False, True]
    assert by_n["2"].explore_usage.output_tokens == 20
    assert synthesizer.calls[1][0].count("</reference") == 1  # the N=1 synthesis saw path 0


async def test_mixed_generators_get_rows_of_their_own(tmp_path):
    problems = [Problem("g1", "q1", "1", "easy"), Problem("h1", "q2", "2", "hard")]
    explorer = scripted(*explorer_script(4, "1111"), *explorer_script(4, "2333"))
    synthesizer = scripted(reply("\\boxed{1}"), reply("\\boxed{2}"))
    path = await evaluate(tmp_path, problems, explorer, synthesizer, ns=(4,))
    lines = read_results(path)
    assert {line.id: line.group for line in lines} == {"g1": "easy", "h1": "hard"}
    summary = summarize(lines, [4])
    assert summary["groups"]["easy"]["by_n"]["4"]["cons_at_n"] == 100
    assert summary["groups"]["hard"]["by_n"]["4"]["cons_at_n"] == 0
    assert summary["groups"]["hard"]["pass_at_1"] == 25
    table = markdown_table(summary, "mix", "m")
    assert "| easy | m | 4 | 100.0 | 100.0 | 100.0 | 100.0 |" in table
    assert "| hard | m | 4 | 25.0 | 0.0 | 100.0 | 100.0 |" in table
    assert "| mix | m | 4 | 62.5 | 50.0 | 100.0 | 100.0 |" in table
    # the policy block: a column per group (A2R row: 100 in both; Cons@N: 100 and 0)
    assert "| Cons@N | 50.0 | 80 | -27.3% | 0.000000 | – | 100.0 | 0.0 |" in table
    assert (
        "| shortcut (>= 75% agree) | 50.0 | 80 | -27.3% | 0.000000 | 100% | 100.0 | 0.0 |" in table
    )


async def test_a_restarted_eval_skips_what_finished(tmp_path):
    source = write_jsonl(tmp_path, [("a", "q1", "1"), ("b", "q2", "2"), ("c", "q3", "3")])
    problems = load_problems(str(source))
    synth = [reply("\\boxed{1}")]
    await evaluate(
        tmp_path,
        problems[:2],
        scripted(*explorer_script(4, "1111") * 2),
        scripted(*synth * 2),
        ns=(4,),
    )
    torn = (tmp_path / RESULTS_FILE).read_text() + '{"key": "c#0", "torn'
    (tmp_path / RESULTS_FILE).write_text(torn)  # a line cut off by a crash

    explorer = scripted(*explorer_script(4, "3333"))
    await evaluate(tmp_path, problems, explorer, scripted(reply("\\boxed{3}")), ns=(4,))
    assert len(explorer.calls) == 4  # only problem c
    lines = read_results(tmp_path / RESULTS_FILE)
    assert sorted(line.id for line in lines) == ["a", "b", "c"]
    summary = summarize(lines, [4])
    assert summary["by_n"]["4"]["a2r"] == pytest.approx(100 * 2 / 3)  # b's synthesis said 1


def test_table_json_and_plot(tmp_path):
    needs("matplotlib", "PIL")
    from PIL import Image

    rows = [
        result_line(
            paths=[
                saved_path(correct=c, usage={"input_tokens": 10, "output_tokens": 90, "cost": 1e-4})
                for c in (True, False)
            ],
            by_n={
                n: synthesis(
                    cons_correct=True,
                    pass_at_n=True,
                    a2r_correct=n == "2",
                    explore_usage={
                        "input_tokens": 10 * int(n),
                        "output_tokens": 90 * int(n),
                        "cost": 1e-4 * int(n),
                    },
                    synthesize_usage={"input_tokens": 50, "output_tokens": 20, "cost": 5e-5},
                )
                for n in ("1", "2")
            },
        )
    ]
    summary = summarize(rows, [1, 2])
    assert summary["pass_at_1"] == 50 and summary["by_n"]["2"]["a2r"] == 100
    assert summary["by_n"]["2"]["a2r_cost_per_1k_queries"] == pytest.approx(0.25)
    table = markdown_table(summary, "gsm", "small -> big")
    assert "| gsm | small -> big | 2 | 50.0 | 100.0 | 100.0 | 100.0 |" in table
    png = plot_accuracy_vs_cost(summary, tmp_path / "plot.png", "gsm")
    image = Image.open(png).convert("L")
    assert image.size == (1200, 540)
    assert len(image.getcolors(maxcolors=1 << 16)) > 20  # lines, markers, text: not blank


def test_cli_names_a_bad_source_or_n_range_before_calling_anything(tmp_path):
    needs("math_verify", "matplotlib", "reasoning_gym", "tqdm")
    a2r = str(Path(sys.executable).with_name("a2r"))
    env = {**os.environ, "A2R_EXPLORER__MODEL": "e", "A2R_SYNTHESIZER__MODEL": "s"}

    def run(*args):
        return subprocess.run(
            [a2r, "eval", *args, "--out", str(tmp_path / "out")],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    too_big = run("builtin:basic_arithmetic", "--size", "2", "--n", "2", "--ns", "1", "4")
    assert too_big.returncode == 2
    assert "--ns must lie in [1, --n=2]: got [1, 4]; raise --n" in too_big.stderr
    missing = run(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such data file" in missing.stderr
    assert not (tmp_path / "out" / RESULTS_FILE).exists()


async def test_report_writes_the_table_from_the_results_so_far_without_a_model(
    tmp_path, monkeypatch, capsys
):
    from a2r_graph.serving.cli import main

    source = write_jsonl(tmp_path, [("a", "q1", "1"), ("b", "q2", "2"), ("c", "q3", "3")])
    out = tmp_path / "out"
    out.mkdir()
    problems = load_problems(str(source))
    synthesizer = scripted(*[reply("\\boxed{1}")] * 3)
    await evaluate(out, problems[:1], scripted(*explorer_script(4, "1122")), synthesizer)
    failed = result_line("b", failed=True, error="Down: the server")
    with (out / RESULTS_FILE).open("a") as lines:  # b failed; c has not run
        lines.write(failed.model_dump_json() + "\n")
    monkeypatch.setenv("A2R_EXPLORER__MODEL", "e")
    monkeypatch.setenv("A2R_SYNTHESIZER__MODEL", "s")
    monkeypatch.setenv("A2R_EXPLORER__BASE_URL", "http://127.0.0.1:9/v1")  # nothing there
    code = main(["eval", str(source), "--report", "--out", str(out), "--ns", "1", "2", "4"])
    shown = capsys.readouterr()
    assert "1 queries finished; 1 failed and are left out" in shown.out
    assert "; 1 not run yet." in shown.out
    assert code == 1 and "1 of 3 problem runs failed" in shown.err  # b: a failure, said so
    assert json.loads((out / "results.json").read_text())["pending"] == 1
    assert main(["eval", str(source), "--report", "--out", str(tmp_path / "none")]) == 2
    assert "none/results.jsonl does not exist: point --out at" in capsys.readouterr().err
