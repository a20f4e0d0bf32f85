"""Faults survived with nothing lost: real servers stopped, killed, failing or hung, and the
CLI's printed ``a2r resume`` command finishing the run without paying again for what finished.

The explorers run on the real vLLM server or on the loopback server (``servers/loopback.py``:
real HTTP, deterministic replies, request counters, fault injection); every run is the ``a2r``
command a user types, saving to SQLite.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time

import pytest

from servers.loopback import LoopbackServer
from tests.integration.conftest import A2R, a2r, free_port

pytestmark = pytest.mark.integration
QUESTION = "What is 17 + 25?"


def stage_env(explorer: tuple[str, str], synthesizer: tuple[str, str], **extra: str) -> dict:
    """The environment of an ``a2r`` run: endpoints, quick retries, and ``extra``."""
    return {
        **os.environ,
        "A2R_EXPLORER__BASE_URL": explorer[0],
        "A2R_EXPLORER__MODEL": explorer[1],
        "A2R_SYNTHESIZER__BASE_URL": synthesizer[0],
        "A2R_SYNTHESIZER__MODEL": synthesizer[1],
        "A2R_MAX_ATTEMPTS": "2",
        "A2R_RETRY_INITIAL_WAIT_S": "0.1",
        "A2R_RETRY_MAX_WAIT_S": "0.5",
        **extra,
    }


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


def test_ctrl_c_mid_run_keeps_the_finished_explorers():
    with LoopbackServer(models=("explore", "synth")) as server:
        server.inject_fault(model="explore", hang=True, after=2)
        env = stage_env((server.base_url, "explore"), (server.base_url, "synth"))
        run = start_a2r("ask", QUESTION, "--n", "4", env=env)
        deadline = time.monotonic() + 30
        while server.stats()["completed"].get("explore", 0) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # the two finished writes reach SQLite
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 130, stderr
        assert "a2r: interrupted" in stderr

        server.clear_faults()
        failed = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
        result = resume(failed, env)
        assert server.stats()["completed"] == {"explore": 4, "synth": 1}
        assert result["boxed_answer"] == "42" and len(result["paths"]) == 4


def test_a_hung_server_never_hangs_the_run():
    with LoopbackServer(models=("explore", "synth")) as server:
        server.inject_fault(hang=True)
        env = stage_env((server.base_url, "explore"), (server.base_url, "synth"))
        started = time.monotonic()
        per_call = a2r("ask", QUESTION, "--n", "2", "--timeout", "1", env=env)
        per_call_s = time.monotonic() - started
        assert per_call.returncode == 1
        assert "failed after 2 attempt(s)" in per_call.stderr and "Timeout" in per_call.stderr
        assert per_call_s < 30

        started = time.monotonic()
        whole = a2r("ask", QUESTION, "--n", "2", "--run-timeout", "2", env=env)
        assert whole.returncode == 1
        assert "the run took longer than --run-timeout 2.0 s" in whole.stderr
        assert "a2r resume " in whole.stderr
        assert time.monotonic() - started < 30
