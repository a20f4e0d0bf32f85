"""Failed problems (a server down, a failed synthesis) are not wrong answers: they are reported
apart, retried on rerun, and make ``a2r eval`` exit non-zero."""

import json
import socket

import httpx
import openai
import pytest

from a2r_graph.eval.report import markdown_table, summarize
from a2r_graph.eval.results import RESULTS_FILE, read_results
from a2r_graph.serving.cli import main
from tests.eval_fakes import evaluate, problems
from tests.fakes import reply, scripted

pytest.importorskip("math_verify", reason="math-verify (pip install 'a2r-graph[eval]')")

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def down():
    """What the client raises when the server is down (retried, then a failure)."""
    return openai.APIConnectionError(request=REQUEST)


def boxed(*answers):
    return [reply(f"<think>t</think>so \\boxed{{{a}}}") for a in answers]


async def test_a_problem_whose_server_was_down_is_not_wrong_and_a_rerun_retries_it(tmp_path):
    todo = problems(tmp_path, ("a", "q1", "1"), ("b", "q2", "2"))
    explorer = scripted(down(), down(), *boxed("2", "2"))  # a: both paths fail; b: fine
    finished = await evaluate(tmp_path, todo, explorer, scripted(reply("\\boxed{2}")))

    assert [line.id for line in finished] == ["b"]
    everything = read_results(tmp_path / RESULTS_FILE, failed=True)
    [failed] = [line for line in everything if line.id == "a"]
    assert failed.failed is True and "NotEnoughPathsError" in failed.error
    summary = summarize(everything, [2])
    assert (summary["queries"], summary["failed"]) == (1, 1)
    assert summary["by_n"]["2"]["a2r"] == 100  # b, right; a is not counted as wrong
    assert "1 failed and are left out" in markdown_table(summary, "bench", "m")

    explorer, synthesizer = scripted(*boxed("1", "1")), scripted(reply("\\boxed{1}"))
    finished = await evaluate(tmp_path, todo, explorer, synthesizer)  # the server is back
    assert len(explorer.calls) == 2 and len(synthesizer.calls) == 1  # only a, retried
    assert sorted(line.id for line in finished) == ["a", "b"]
    summary = summarize(read_results(tmp_path / RESULTS_FILE, failed=True), [2])
    assert (summary["queries"], summary["failed"], summary["by_n"]["2"]["a2r"]) == (2, 0, 100)


async def test_a_path_the_server_never_answered_fails_the_problem_and_only_it_is_resampled(
    tmp_path,
):
    todo = problems(tmp_path, ("a", "q1", "1"))
    explorer = scripted(down(), *boxed("1", "1"))  # min_paths=1: the run itself finishes
    finished = await evaluate(tmp_path, todo, explorer, scripted(reply("\\boxed{1}")), n=3, ns=(3,))
    assert finished == []  # its Pass@1 would count the dead call as a wrong sample
    [failed] = read_results(tmp_path / RESULTS_FILE, failed=True)
    assert "did not answer path(s)" in failed.error

    explorer, synthesizer = scripted(*boxed("1")), scripted(reply("\\boxed{1}"))
    [line] = await evaluate(tmp_path, todo, explorer, synthesizer, n=3, ns=(3,))
    assert len(explorer.calls) == 1  # the two answered paths are kept
    assert [p.correct for p in line.paths] == [True, True, True]
    assert line.by_n["3"].a2r_correct is True


async def test_a_failed_synthesis_for_one_n_is_retried_alone(tmp_path):
    todo = problems(tmp_path, ("a", "q1", "1"))
    explorer = scripted(*boxed("1", "2"))
    synthesizer = scripted(reply("\\boxed{1}"), down())  # N=2 (the run), then N=1 fails
    assert await evaluate(tmp_path, todo, explorer, synthesizer, ns=(1, 2)) == []
    [failed] = read_results(tmp_path / RESULTS_FILE, failed=True)
    assert failed.error.startswith("N=1: EndpointUnavailableError")

    explorer, synthesizer = scripted(), scripted(reply("\\boxed{1}"))
    [line] = await evaluate(tmp_path, todo, explorer, synthesizer, ns=(1, 2))
    assert (len(explorer.calls), len(synthesizer.calls)) == (0, 1)
    assert {n: cell.a2r_correct for n, cell in line.by_n.items()} == {"1": True, "2": True}


def test_an_eval_whose_runs_all_failed_exits_1_and_reports_no_accuracy(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("matplotlib")
    pytest.importorskip("reasoning_gym")
    source = tmp_path / "problems.jsonl"
    source.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n')
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{free.getsockname()[1]}/v1"  # nothing listens there
    for stage in ("EXPLORER", "SYNTHESIZER"):
        monkeypatch.setenv(f"A2R_{stage}__BASE_URL", dead)
        monkeypatch.setenv(f"A2R_{stage}__MODEL", "m")
    monkeypatch.setenv("A2R_MAX_ATTEMPTS", "1")
    out = tmp_path / "out"
    command = ["eval", str(source), "--n", "2", "--runs", "2", "--out", str(out)]

    assert main(command) == 1
    printed = capsys.readouterr()
    assert "2 of 2 problem runs failed (e.g. NotEnoughPathsError" in printed.err
    assert "Run the same command again to retry them" in printed.err
    assert "No problem of" in printed.out and "| Benchmark |" not in printed.out
    summary = json.loads((out / "results.json").read_text())
    assert (summary["queries"], summary["failed"], summary["pass_at_1"]) == (0, 2, None)
    assert summary["by_n"]["2"]["a2r"] is None
    assert main(command) == 1  # retried (and failed again), not skipped as finished
    assert "2 of 2 problem runs failed" in capsys.readouterr().err
