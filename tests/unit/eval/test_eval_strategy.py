"""``a2r eval --graph NAME``: another registered strategy evaluated on the same problems as A2R
(the echo and tally test strategies: their boxed answer is the question's word count, so a
problem's gold answer decides whether it is right)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langgraph.runtime import Runtime

import tests.strategies
from a2r_graph.eval.results import (
    RESULTS_FILE,
    ResultLine,
    ResultsError,
    StrategyCell,
    read_results,
)
from a2r_graph.serving.cli import main
from tests import eval_strategies

PROBLEMS = [  # id, question, gold: the word count is right for a, b and d, wrong for c
    ("a", "one two three", "3"),
    ("b", "four five", "2"),
    ("c", "six seven eight nine", "5"),
    ("d", "ten", "1"),
]


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setenv("A2R_STRATEGIES", "tests.strategies:ECHO tests.eval_strategies:TALLY")
    monkeypatch.setitem(eval_strategies.DOWN, "boom", True)


@pytest.fixture
def runs(monkeypatch) -> list[str]:
    """The questions the echo graph's node ran, in order (one model call each)."""
    ran: list[str] = []
    echo = tests.strategies.echo

    async def counted(state: Any, runtime: Runtime[Any]) -> dict[str, Any]:
        ran.append(state["question"])
        return await echo(state, runtime)

    monkeypatch.setattr(tests.strategies, "echo", counted)
    return ran


def source(tmp_path, problems=PROBLEMS) -> str:
    path = tmp_path / "problems.jsonl"
    rows = [{"id": i, "problem": q, "answer": a} for i, q, a in problems]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def evaluate(tmp_path, graph: str, *flags: str, problems=PROBLEMS) -> int:
    out = tmp_path / "out"
    return main(["eval", source(tmp_path, problems), "--graph", graph, "--out", str(out), *flags])


def report(tmp_path) -> dict[str, Any]:
    return json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))


def lines(tmp_path, failed: bool = False) -> list[ResultLine]:
    return read_results(tmp_path / "out" / RESULTS_FILE, failed=failed)


def test_each_run_is_judged_against_the_gold_answer_and_reported(tmp_path, runs, capsys):
    """Catches: an eval that runs the A2R graph whatever --graph names (it would call absent
    model servers), judges another strategy's answer by anything but its boxed answer against
    the gold one, drops repetitions from Pass@1, or reports tokens, metrics or wall time that
    are not the runs' means."""
    assert evaluate(tmp_path, "echo", "--runs", "2", "--concurrency", "2") == 0
    assert sorted(runs) == sorted(q for _, q, _ in PROBLEMS * 2)
    saved = lines(tmp_path)
    assert len(saved) == 8
    for line in saved:
        assert line.graph == "echo" and line.paths == [] and line.by_n == {}
        assert isinstance(line.strategy, StrategyCell)
        assert line.strategy.correct == (line.id != "c")
        assert line.strategy.boxed == str(len(line.problem.split()))
        assert line.wall_s is not None
    summary = report(tmp_path)
    assert summary["graph"] == "echo" and summary["queries"] == 8 and summary["failed"] == 0
    assert summary["pass_at_1"] == 75.0
    words = (3 + 2 + 4 + 1) / 4
    assert summary["tokens_per_query"] == 2 * words
    assert summary["stages"]["echo"] == {
        "calls": 1.0,
        "input_tokens": words,
        "output_tokens": words,
        "cost": 0.0,
    }
    assert summary["metrics"] == {"words": words}
    assert summary["wall_s_per_query"] > 0
    table = (tmp_path / "out" / "table.md").read_text(encoding="utf-8")
    assert "| echo | 75.0 | 0.000000 | 5 |" in table
    assert "| words | 2.5 |" in table
    assert "8 queries finished." in table
    assert (tmp_path / "out" / "accuracy_vs_cost.png").is_file()
    assert "| echo | 75.0 |" in capsys.readouterr().out


def test_stages_costs_and_nested_metrics_are_summed_per_query(tmp_path):
    """Catches: cost per query taken from one stage (or from stages plus their total, twice),
    a stage's calls lost, or a strategy's per-model numbers (a nested output field) dropped
    from its metrics while its text fields are taken for numbers."""
    assert evaluate(tmp_path, "tally") == 0
    summary = report(tmp_path)
    words = (3 + 2 + 4 + 1) / 4
    price = eval_strategies.PRICE
    assert summary["cost_per_query"] == pytest.approx(price * (words + 1))
    assert summary["tokens_per_query"] == 2 * (words + 1)
    assert list(summary["stages"]) == ["small", "large", "total"]
    assert summary["stages"]["total"]["calls"] == 2.0
    assert summary["stages"]["small"]["cost"] == pytest.approx(price * words)
    assert summary["metrics"] == {"switches": 2 * words, "written.small": words, "written.large": 1}
    assert lines(tmp_path)[0].strategy.total.cost == pytest.approx(price * 4)


def test_a_rerun_runs_nothing_finished_and_takes_a_saved_run_whose_line_was_lost(tmp_path, runs):
    """Catches: a resumed eval that runs (and pays for) finished problems again, or that
    reruns a graph run that finished on its thread when the eval was killed before writing
    its line."""
    assert evaluate(tmp_path, "echo", "--size", "2") == 0
    assert len(runs) == 2
    assert evaluate(tmp_path, "echo") == 0
    assert len(runs) == 4  # only c and d ran
    results = tmp_path / "out" / RESULTS_FILE
    kept = results.read_text(encoding="utf-8").splitlines(keepends=True)
    results.write_text("".join(kept[:-1]), encoding="utf-8")  # killed before the last line
    assert evaluate(tmp_path, "echo") == 0
    assert len(runs) == 4
    assert sorted(line.key for line in lines(tmp_path)) == ["a#0", "b#0", "c#0", "d#0"]
    assert evaluate(tmp_path, "echo", "--report") == 0
    assert len(runs) == 4 and report(tmp_path)["queries"] == 4


def test_a_run_that_raises_is_a_failure_not_a_wrong_answer_and_is_retried(tmp_path, capsys):
    """Catches: a strategy's failure (a server down) counted as a wrong answer, crashing the
    eval and losing the other problems, or never retried on the next run of the command."""
    problems = [*PROBLEMS[:2], ("e", "boom boom", "2")]
    assert evaluate(tmp_path, "tally", problems=problems) == 1
    assert "1 of 3 problem runs failed (e.g. RuntimeError: the large model's server is down)" in (
        capsys.readouterr().err
    )
    summary = report(tmp_path)
    assert (summary["queries"], summary["failed"], summary["pass_at_1"]) == (2, 1, 100.0)
    [failed] = [line for line in lines(tmp_path, failed=True) if not line.finished]
    assert failed.key == "e#0" and failed.graph == "tally" and failed.strategy is None
    eval_strategies.DOWN["boom"] = False
    assert evaluate(tmp_path, "tally", problems=problems) == 0
    summary = report(tmp_path)
    assert (summary["queries"], summary["failed"], summary["pass_at_1"]) == (3, 0, 100.0)


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        (["--n", "4", "--ns", "2"], "--n, --ns: options of the a2r graph"),
        (["--alone", "2", "--variants", "dedupe"], "--alone, --variants: options of the a2r"),
        (["--paths-from", "elsewhere", "--keep-syntheses"], "--paths-from, --keep-syntheses"),
        (["--explorer-model", "m"], "--explorer-model: options of the a2r graph"),
    ],
)
def test_a2r_flags_are_refused_for_another_graph(tmp_path, runs, capsys, flags, refused):
    """Catches: A2R's options (its explorers, syntheses per N, synthesizer alone, saved paths)
    silently ignored on another graph, so that a table claims settings that never applied."""
    assert evaluate(tmp_path, "echo", *flags) == 2
    error = capsys.readouterr().err
    assert refused in error and "the echo graph takes its configuration" in error
    assert runs == [] and not (tmp_path / "out").exists()


def test_an_unknown_graph_and_another_graphs_results_are_refused(tmp_path, monkeypatch, capsys):
    """Catches: a misspelt --graph evaluated as A2R, and an eval whose --out holds another
    graph's lines, whose keys would pass for finished problems of this one (A2R's report
    reading echo's lines, or echo's skipping the problems A2R finished)."""
    assert evaluate(tmp_path, "ecko") == 2
    assert "no strategy is named 'ecko'" in capsys.readouterr().err
    assert evaluate(tmp_path, "echo") == 0
    monkeypatch.setenv("A2R_EXPLORER__MODEL", "e")
    monkeypatch.setenv("A2R_SYNTHESIZER__MODEL", "s")
    assert evaluate(tmp_path, "a2r") == 2
    assert "holds results of the echo graph, this eval --graph a2r" in capsys.readouterr().err
    assert evaluate(tmp_path, "tally") == 2
    assert "holds results of the echo graph, this eval --graph tally" in capsys.readouterr().err
    paths_from = ["--paths-from", str(tmp_path / "out"), "--out", str(tmp_path / "a2r")]
    assert main(["eval", source(tmp_path), *paths_from]) == 2
    assert "holds runs of the echo graph, not a2r's explorer paths" in capsys.readouterr().err


def test_the_strict_reader_reads_strategy_lines_and_refuses_foreign_ones(tmp_path):
    """Catches: a results schema that takes any dict as a strategy's run (a line from another
    tool or version read as this one's) or that cannot read back the lines it wrote."""
    assert evaluate(tmp_path, "echo", "--size", "1") == 0
    results = tmp_path / "out" / RESULTS_FILE
    written = results.read_text(encoding="utf-8")
    assert [line.graph for line in read_results(results)] == ["echo"]
    line = json.loads(written)
    line["strategy"]["metrics"] = {"words": "three"}
    results.write_text(written + json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(ResultsError, match=r"line 2 is not a line .*strategy\.metrics\.words"):
        read_results(results)
    del line["strategy"]["metrics"]
    line["strategy"]["route"] = "small"
    results.write_text(written + json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(ResultsError, match=r"line 2 is not a line .*strategy\.route"):
        read_results(results)
    results.write_text(written + json.dumps(line)[:40], encoding="utf-8")  # torn by a kill
    assert len(read_results(results)) == 1
