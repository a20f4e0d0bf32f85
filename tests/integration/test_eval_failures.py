"""``a2r eval`` against a real server that fails: the failed problems are reported apart (not
as wrong answers), the command exits 1, and the same command run again retries only them."""

from __future__ import annotations

import json

import pytest

from a2r_graph.eval.results import read_results
from tests.integration.conftest import a2r, stage_env
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration


def test_problems_failed_by_the_server_are_retried_by_the_same_command(tmp_path):
    source = tmp_path / "problems.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "problem": f"What is {i}+{i}?", "answer": str(2 * i)}) + "\n"
            for i in (1, 2, 3)
        )
    )
    out = tmp_path / "out"
    command = ["eval", str(source), "--n", "2", "--concurrency", "1", "--out", str(out)]
    with LoopbackServer(models=("explore", "synth")) as server:
        env = stage_env(
            (server.base_url, "explore"), (server.base_url, "synth"), A2R_RETRY_MAX_WAIT_S="0.2"
        )
        server.inject_fault(model="explore", status=503, count=-1, after=2)  # p1 gets through
        failed = a2r(*command, env=env)
        assert failed.returncode == 1, failed.stderr
        assert "2 of 3 problem runs failed (e.g. NotEnoughPathsError" in failed.stderr
        assert "Run the same command again to retry them" in failed.stderr
        assert "1 queries finished; 2 failed and are left out" in failed.stdout
        assert "| 2 | 100.0 | 100.0 | 100.0 | 100.0 |" in failed.stdout  # p1 alone, right
        summary = json.loads((out / "results.json").read_text())
        assert (summary["queries"], summary["failed"]) == (1, 2)
        assert server.stats()["completed"] == {"explore": 2, "synth": 1}

        server.clear_faults()  # the server is healthy again
        again = a2r(*command, env=env)
        assert again.returncode == 0, again.stderr
        assert server.stats()["completed"] == {"explore": 6, "synth": 3}  # p2, p3 only
    assert sorted(line.id for line in read_results(out / "results.jsonl")) == ["p1", "p2", "p3"]
    summary = json.loads((out / "results.json").read_text())
    assert (summary["queries"], summary["failed"], summary["by_n"]["2"]["a2r"]) == (3, 0, 100)
    assert "3 queries finished." in again.stdout
    # the wall time of both invocations, in all
    assert summary["invocations"] == 2 and summary["wall_s"] > 0
    assert "over 2 invocation(s) of this eval." in again.stdout
