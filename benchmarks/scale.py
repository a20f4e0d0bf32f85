"""Load at scale: 200 concurrent A2R runs (N=4) through ``langgraph dev`` keeping its runs in
PostgreSQL (``langgraph.postgres.json``), the explorer stage behind vllm-router over two
loopback replicas (consistent hashing on the run's session header), the synthesizer on a third
loopback server; every reply takes 50 ms. Checks that no run is lost or mixed up (each
question has its own sum) and prints runs/s, p50/p95 latency, the server's memory and how the
explorer calls spread over the replicas.

    python -m benchmarks.scale [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import ExitStack

from langgraph_sdk import get_client

from benchmarks.common import group_rss_mb, machine, percentile, table
from servers.postgres import PostgresServer
from servers.router import VllmRouter
from tests.integration.conftest import langgraph_dev
from tests.loopback import LoopbackServer


def question(i: int) -> tuple[str, str]:
    a, b = 2000 + 41 * i, 3 * i + 7
    return f"A store has {a} pencils and gets {b} more. What is {a} + {b}?", str(a + b)


async def drive(url: str, runs: int) -> tuple[list[float], float, int]:
    """``runs`` concurrent runs, each on its own thread: (latencies, wall seconds, wrong)."""
    client = get_client(url=url, timeout=900)

    async def one(i: int) -> tuple[float, bool]:
        text, expected = question(i)
        thread = await client.threads.create()
        started = time.perf_counter()
        result = await client.runs.wait(thread["thread_id"], "a2r", input={"question": text})
        right = result.get("question") == text and result.get("boxed_answer") == expected
        return time.perf_counter() - started, right

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(i) for i in range(runs)))
    wall = time.perf_counter() - started
    return [latency for latency, _ in outcomes], wall, sum(not right for _, right in outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with ExitStack() as stack:
        postgres = stack.enter_context(PostgresServer())
        replicas = [
            stack.enter_context(LoopbackServer(models=("explore",), latency_ms=50))
            for _ in range(2)
        ]
        synth = stack.enter_context(LoopbackServer(models=("synth",), latency_ms=50))
        router = stack.enter_context(VllmRouter([r.base_url for r in replicas]))
        env = {
            "A2R_EXPLORER__BASE_URL": router.base_url,
            "A2R_EXPLORER__MODEL": "explore",
            "A2R_SYNTHESIZER__BASE_URL": synth.base_url,
            "A2R_SYNTHESIZER__MODEL": "synth",
            "A2R_N": "4",
            "A2R_SYNTHESIS_MODE": "synthesize",  # every run pays both stages
            "A2R_CHECKPOINT_DB": postgres.dsn,
            "A2R_SERVER_AUTH": "none",
            "N_JOBS_PER_WORKER": str(args.runs),
        }
        log = postgres.log_path.with_name("scale-langgraph-dev.log")
        url, process = stack.enter_context(langgraph_dev(env, log, "langgraph.postgres.json"))
        asyncio.run(drive(url, 10))  # warm-up: imports, first graph build, tables
        before = [r.stats()["completed"].get("explore", 0) for r in replicas]
        rss_start = group_rss_mb(process.pid)
        latencies, wall, wrong = asyncio.run(drive(url, args.runs))
        rss = group_rss_mb(process.pid)
        spread = [
            r.stats()["completed"].get("explore", 0) - b
            for r, b in zip(replicas, before, strict=True)
        ]
    lost = args.runs - len(latencies)
    print(f"machine: {machine()}")
    print(
        table(
            ["runs", "wall (s)", "runs/s", "p50 (s)", "p95 (s)", "lost", "mixed up",
             "explorer calls per replica", "server RSS start/end (MB)"],
            [[args.runs, wall, args.runs / wall, percentile(latencies, 0.5),
              percentile(latencies, 0.95), lost, wrong, " / ".join(map(str, spread)),
              f"{rss_start:.0f} / {rss:.0f}"]],
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
