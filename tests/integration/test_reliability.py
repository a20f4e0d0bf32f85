"""Faults survived with nothing lost: real servers stopped, killed, failing or hung, and the
CLI's printed ``a2r resume`` command finishing the run without paying again for what finished.

The explorers run on the real vLLM server or on the loopback server (``tests/loopback.py``:
real HTTP, deterministic replies, request counters, fault injection); every run is the ``a2r``
command a user types, saving to SQLite.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from a2r_graph import build_graph
from a2r_graph.threads import thread_config
from tests.integration.conftest import A2R, a2r, free_port, stage_env
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
QUESTION = "What is 17 + 25?"


def start_a2r(*args: str, env: dict) -> subprocess.Popen:
    """``a2r`` in the background, to be stopped or starved while it runs."""
    return subprocess.Popen(
        [A2R, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def printed_resume(stderr: str) -> list[str]:
    """The ``a2r resume ...`` command a failed run printed, as argv."""
    line = next(line for line in stderr.splitlines() if line.strip().startswith("a2r resume "))
    return [A2R, *shlex.split(line)[1:]]


def resume(failed: subprocess.CompletedProcess, env: dict) -> dict:
    """Run the printed resume command (with --json) and return its result."""
    done = subprocess.run(
        [*printed_resume(failed.stderr), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_stopped_synthesizer_server_resumes_without_repeating_explorers(vllm_server):
    port = free_port()
    synthesizer = LoopbackServer(models=("synth",), port=port).start()
    synthesizer.stop()  # a real server, stopped: its port refuses connections
    env = stage_env(
        (vllm_server.base_url, vllm_server.model_name),
        (f"http://127.0.0.1:{port}/v1", "synth"),
        A2R_EXPLORER__MAX_TOKENS="48",
        A2R_EXPLORER__SEED="7",
    )
    before = vllm_server.token_counters()
    failed = a2r("ask", QUESTION, "--n", "3", env=env)
    explored = vllm_server.token_counters()
    assert failed.returncode == 1
    assert (
        f"synthesizer endpoint http://127.0.0.1:{port}/v1 (model 'synth') failed" in failed.stderr
    )
    assert "a2r resume " in failed.stderr
    assert explored["vllm:generation_tokens_total"] > before["vllm:generation_tokens_total"]

    with LoopbackServer(models=("synth",), port=port) as synthesizer:  # it comes back
        result = resume(failed, env)
        assert synthesizer.stats()["completed"] == {"synth": 1}
    assert vllm_server.token_counters() == explored  # 0 explorer tokens the second time
    assert result["boxed_answer"] and len(result["paths"]) == 3
    assert result["usage"]["explore"]["calls"] == 3
    assert result["usage"]["explore"]["output_tokens"] == (
        explored["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    )


def test_explorer_server_killed_mid_run_fails_cleanly_and_resumes(tmp_path):
    port = free_port()
    with LoopbackServer(models=("synth",)) as synthesizer:
        explorer = LoopbackServer(models=("explore",), port=port, latency_ms=3000).start()
        env = stage_env((explorer.base_url, "explore"), (synthesizer.base_url, "synth"), A2R_N="4")
        run = start_a2r("ask", QUESTION, env=env)
        deadline = time.monotonic() + 30
        while explorer.stats()["requests"].get("explore", 0) < 4:
            assert time.monotonic() < deadline, "the explorers never reached the server"
            time.sleep(0.05)
        explorer.kill()  # SIGKILL with 4 requests in flight
        stdout, stderr = run.communicate(timeout=120)
        failed = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
        assert failed.returncode == 1, stderr
        assert "only 0 explorer path(s) succeeded but min_paths=1" in stderr
        assert f"explorer endpoint {explorer.base_url} (model 'explore') failed after 2" in stderr
        assert "Connection" in stderr
        assert synthesizer.stats()["requests"] == {}

        with LoopbackServer(models=("explore",), port=port) as explorer:  # back, same port
            result = resume(failed, env)
            assert explorer.stats()["completed"] == {"explore": 4}
        assert result["boxed_answer"] == "42"
        assert [p["error"] for p in result["paths"]] == [None] * 4


def test_failed_explorers_below_min_paths_are_the_only_ones_sampled_again():
    with LoopbackServer(models=("explore", "synth")) as server:
        server.inject_fault(model="explore", status=503, after=2)  # 2 answer, then 503s
        env = stage_env((server.base_url, "explore"), (server.base_url, "synth"))
        failed = a2r("ask", QUESTION, "--n", "4", "--min-paths", "3", env=env)
        assert failed.returncode == 1
        assert "only 2 explorer path(s) succeeded but min_paths=3" in failed.stderr
        listed = [line for line in failed.stderr.splitlines() if line.startswith("  path ")]
        assert len(listed) == 2 and all("Error code: 503" in line for line in listed)
        assert "attempt 1 to" in failed.stderr and "retrying in" in failed.stderr  # logged

        server.clear_faults()
        result = resume(failed, env)
        stats = server.stats()
        assert stats["completed"] == {"explore": 4, "synth": 1}  # 2 + the 2 that failed
        assert stats["failed"] == {"explore": 4}  # 2 paths x 2 attempts, none retried since
        assert result["boxed_answer"] == "42"


INTERRUPT_S = 20
"""How long Ctrl-C may take to stop a run: unwinding takes about a second; the hung requests
would take their 600 s request timeout."""


def saved_explorers(db: Path, thread_id: str) -> int:
    """The explorer branches of the thread's unfinished run whose results are saved."""

    async def count() -> int:
        async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
            snapshot = await build_graph(checkpointer=saver).aget_state(thread_config(thread_id))
        return sum(task.name == "explore" and task.result is not None for task in snapshot.tasks)

    return asyncio.run(count()) if db.exists() else 0


def start_run_with_hung_explorers(server: LoopbackServer, db: Path, thread_id: str, env: dict):
    """``a2r ask --n 4`` whose last 2 explorer requests hang, returned once all 4 requests
    reached the server and the 2 answered paths are saved: nothing else is left to happen."""
    server.inject_fault(model="explore", hang=True, after=2)
    run = start_a2r("ask", QUESTION, "--n", "4", "--db", str(db), "--thread", thread_id, env=env)
    deadline = time.monotonic() + 120
    while server.stats()["requests"].get("explore", 0) < 4 or saved_explorers(db, thread_id) < 2:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the run never got its 4 explorers in flight"
        time.sleep(0.1)
    return run


def stopped(run: subprocess.Popen) -> subprocess.CompletedProcess:
    """The run's outcome, which must come within INTERRUPT_S of its Ctrl-C."""
    try:
        stdout, stderr = run.communicate(timeout=INTERRUPT_S)
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        pytest.fail(f"a2r ignored SIGINT for {INTERRUPT_S} s while 2 explorer requests hung")
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)


def test_ctrl_c_mid_run_keeps_the_finished_explorers(tmp_path):
    with LoopbackServer(models=("explore", "synth")) as server:
        env = stage_env((server.base_url, "explore"), (server.base_url, "synth"))
        run = start_run_with_hung_explorers(server, tmp_path / "threads.sqlite", "ctrl-c", env)
        run.send_signal(signal.SIGINT)
        failed = stopped(run)
        assert failed.returncode == 130, failed.stderr
        assert "a2r: interrupted" in failed.stderr
        assert "The run is saved as thread ctrl-c;" in failed.stderr

        server.clear_faults()
        result = resume(failed, env)
        assert server.stats()["completed"] == {"explore": 4, "synth": 1}  # 2, then the 2 hung
        assert result["boxed_answer"] == "42" and len(result["paths"]) == 4


TGKILL = {"x86_64": 234, "aarch64": 131}.get(platform.machine())


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or TGKILL is None, reason="tgkill(2): Linux only"
)
def test_ctrl_c_taken_by_another_thread_of_the_process_stops_the_run(tmp_path):
    """The kernel gives a process's SIGINT to any of its threads that does not block it (the
    main one when it can, not always). When another thread (aiosqlite's, the executor's)
    took it, asyncio.run's handler waited for the main thread to wake, which nothing did
    with every request hanging: the run went on until the requests timed out. Here the
    signal goes to such a thread on purpose."""
    with LoopbackServer(models=("explore", "synth")) as server:
        env = stage_env((server.base_url, "explore"), (server.base_url, "synth"))
        run = start_run_with_hung_explorers(server, tmp_path / "threads.sqlite", "other", env)
        others = sorted(int(t) for t in os.listdir(f"/proc/{run.pid}/task") if int(t) != run.pid)
        assert others, "a2r runs threads besides its main one (aiosqlite's at least)"
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(TGKILL, run.pid, others[0], signal.SIGINT) == 0, ctypes.get_errno()
        failed = stopped(run)
        assert failed.returncode == 130, failed.stderr
        assert "a2r: interrupted" in failed.stderr and "a2r resume other" in failed.stderr


def test_paths_cut_off_by_max_tokens_are_sampled_again_once_it_is_raised():
    """Answered but unusable paths do not stay for good: raising --max-tokens, then resuming,
    finishes the run (it would fail again and again if they were kept)."""
    with LoopbackServer(models=("explore", "synth")) as server:
        env = stage_env((server.base_url, "explore"), (server.base_url, "synth"))
        failed = a2r("ask", QUESTION, "--n", "2", "--max-tokens", "3", env=env)
        assert failed.returncode == 1
        assert "only 0 explorer path(s) succeeded" in failed.stderr
        assert "no answer component (finish_reason=length)" in failed.stderr
        command = printed_resume(failed.stderr)
        assert command[command.index("--max-tokens") + 1] == "3"

        command[command.index("--max-tokens") + 1] = "4096"  # the fix
        done = subprocess.run(
            [*command, "--json"], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert [p["error"] for p in result["paths"]] == [None, None]
        assert result["boxed_answer"] == "42"
        assert server.stats()["completed"] == {"explore": 4, "synth": 1}


def test_a_hung_server_never_hangs_the_run():
    with LoopbackServer(models=("explore", "synth")) as server:
        server.inject_fault(hang=True)
        env = stage_env((server.base_url, "explore"), (server.base_url, "synth"))
        # a2r's own timeout (120 s) is the hang detector: the requests hang for an hour.
        per_call = a2r("ask", QUESTION, "--n", "2", "--timeout", "1", env=env, timeout=120)
        assert per_call.returncode == 1
        assert "failed after 2 attempt(s)" in per_call.stderr and "Timeout" in per_call.stderr
        assert server.stats()["requests"] == {"explore": 2 * 2}  # 2 paths, 2 attempts each

        whole = a2r("ask", QUESTION, "--n", "2", "--run-timeout", "2", env=env, timeout=120)
        assert whole.returncode == 1
        assert "the run took longer than --run-timeout 2.0 s" in whole.stderr
        assert "a2r resume " in whole.stderr
