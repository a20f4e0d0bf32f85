"""LangGraph Server under load and faults: 2 x 50 concurrent A2R runs (N=4) through a real
``langgraph dev``, over the loopback OpenAI-compatible server (50 ms a reply, API key required).

Every answer must be its own question's (each question has a distinct sum), none may be lost,
the server's memory must level off, a failed run must resume on its thread without new explorer
calls, and the API key must appear nowhere the server wrote.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid

import pytest
from langgraph_sdk import get_client

from benchmarks.common import group_rss_mb
from tests.integration.conftest import langgraph_dev
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
RUNS_PER_WAVE = 50
KEY_ENV = "A2R_TEST_LOOPBACK_KEY"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(langgraph dev URL, its process, the loopback server, its log path, the API key)."""
    key = f"sk-a2r-{uuid.uuid4().hex}"
    os.environ[KEY_ENV] = key
    log_path = tmp_path_factory.mktemp("load") / "langgraph-dev.log"
    try:
        with LoopbackServer(
            models=("explore", "synth"), latency_ms=50, api_key_env=KEY_ENV
        ) as loopback:
            env = {
                "A2R_EXPLORER__BASE_URL": loopback.base_url,
                "A2R_EXPLORER__MODEL": "explore",
                "A2R_EXPLORER__API_KEY_ENV": KEY_ENV,
                "A2R_SYNTHESIZER__BASE_URL": loopback.base_url,
                "A2R_SYNTHESIZER__MODEL": "synth",
                "A2R_SYNTHESIZER__API_KEY_ENV": KEY_ENV,
                "A2R_MAX_ATTEMPTS": "2",
                "A2R_RETRY_INITIAL_WAIT_S": "0.1",
                "N_JOBS_PER_WORKER": "50",
            }
            with langgraph_dev(env, log_path) as (url, process):
                yield url, process, loopback, log_path, key
    finally:
        del os.environ[KEY_ENV]


def question(i: int) -> tuple[str, str]:
    a, b = 1000 + 37 * i, 7 * i + 3
    return f"A crate holds {a} apples and {b} more arrive. What is {a} + {b}?", str(a + b)


async def wave(url: str, first: int) -> tuple[list[float], float]:
    """RUNS_PER_WAVE concurrent runs, each on its own thread; (latencies, wall seconds)."""
    client = get_client(url=url, timeout=600)

    async def one(i: int) -> float:
        text, expected = question(i)
        thread = await client.threads.create()
        started = time.perf_counter()
        result = await client.runs.wait(
            thread["thread_id"], "a2r", input={"question": text}, context={"n": 4}
        )
        latency = time.perf_counter() - started
        assert result["question"] == text, "a result came back on the wrong thread"
        assert result["boxed_answer"] == expected, (text, result.get("boxed_answer"))
        assert [p["boxed"] for p in result["paths"]] == [expected] * 4
        assert result["usage"]["total"]["calls"] == 5
        state = await client.threads.get_state(thread["thread_id"])
        assert state["values"]["boxed_answer"] == expected
        return latency

    started = time.perf_counter()
    latencies = await asyncio.gather(*(one(i) for i in range(first, first + RUNS_PER_WAVE)))
    return list(latencies), time.perf_counter() - started


async def test_two_waves_of_fifty_concurrent_runs_lose_nothing(served):
    url, process, loopback, _, _ = served
    await wave(url, 1000)  # warm-up: imports, first graph build
    rss_start = group_rss_mb(process.pid)
    before = loopback.stats()
    figures = []
    for number in range(2):
        latencies, wall = await wave(url, number * RUNS_PER_WAVE)
        figures.append((latencies, wall, group_rss_mb(process.pid)))
    after = loopback.stats()
    completed = {model: n - before["completed"][model] for model, n in after["completed"].items()}
    assert completed == {"explore": 2 * RUNS_PER_WAVE * 4, "synth": 2 * RUNS_PER_WAVE}
    assert after["failed"] == before["failed"]  # another test's injected faults count there

    for number, (latencies, wall, rss) in enumerate(figures, 1):
        p50 = statistics.median(latencies)
        p95 = statistics.quantiles(latencies, n=20)[-1]
        print(
            f"\nwave {number}: {RUNS_PER_WAVE} runs (N=4) in {wall:.2f} s = "
            f"{RUNS_PER_WAVE / wall:.1f} runs/s; latency p50 {p50:.2f} s, p95 {p95:.2f} s; "
            f"server RSS {rss:.0f} MB (start {rss_start:.0f} MB)"
        )
    # Memory per run is benchmarks.memory's to measure; here nothing may stay in flight.
    client = get_client(url=url)
    assert await client.threads.search(status="busy") == []


async def test_a_failed_server_run_resumes_on_its_thread_without_new_explorer_calls(served):
    url, _, loopback, _, _ = served
    client = get_client(url=url)
    text, expected = question(500)
    thread = (await client.threads.create())["thread_id"]
    loopback.inject_fault(model="synth", status=500)
    try:
        failed = await client.runs.create(thread, "a2r", input={"question": text})
        await client.runs.join(thread, failed["run_id"])
        assert (await client.runs.get(thread, failed["run_id"]))["status"] == "error"
    finally:
        loopback.clear_faults()
    explored = loopback.stats()["completed"]["explore"]

    result = await client.runs.wait(thread, "a2r", input=None)  # LangGraph's own resume
    assert result["boxed_answer"] == expected
    assert loopback.stats()["completed"]["explore"] == explored


async def test_the_api_key_appears_nowhere_the_server_wrote(served):
    url, _, _, log_path, key = served
    client = get_client(url=url)
    text, _ = question(700)
    await client.runs.wait(
        (await client.threads.create())["thread_id"], "a2r", input={"question": text}
    )
    threads = await client.threads.search(limit=200)
    written = [log_path.read_text()]
    for thread in threads[:20]:
        history = await client.threads.get_history(thread["thread_id"], limit=20)
        written.append(json.dumps(history))
        for run in await client.runs.list(thread["thread_id"]):
            written.append(json.dumps(run))
    everything = "\n".join(written)
    assert "explore" in everything and "<reference1>" in everything  # real content was read
    assert key not in everything
