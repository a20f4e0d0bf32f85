"""Memory per in-flight run: 50 concurrent A2R runs (N=4) held in flight by a slow server.

The loopback server answers after ``--latency-ms``, so all runs are in flight at once; Python
heap (tracemalloc) and process RSS are sampled at that moment and after the runs finished,
over several waves: what one run holds while it waits, and whether anything stays behind.

    python -m benchmarks.memory [--runs 50] [--waves 3] [--latency-ms 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tracemalloc
from pathlib import Path

from a2r_graph import build_graph
from benchmarks.common import machine, table
from benchmarks.overhead import QUESTION, context_for
from tests.loopback import LoopbackServer


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


async def wave(graph, context, runs: int, latency_s: float) -> tuple[float, float]:
    """Run ``runs`` at once; (heap MB, RSS MB) in the middle of the server's wait."""
    tasks = [
        asyncio.create_task(graph.ainvoke({"question": QUESTION}, context=context))
        for _ in range(runs)
    ]
    await asyncio.sleep(latency_s / 2)  # every explorer call is now waiting on the server
    heap, rss = tracemalloc.get_traced_memory()[0] / 2**20, rss_mb()
    results = await asyncio.gather(*tasks)
    assert all(r["boxed_answer"] == "5555" for r in results)
    return heap, rss


async def main(args: argparse.Namespace) -> None:
    print(f"# Memory per in-flight run\n\nmachine: {machine()}\n")
    with LoopbackServer(models=("explore", "synth"), latency_ms=args.latency_ms) as server:
        graph = build_graph()
        context = context_for(server.base_url, 4)
        await graph.ainvoke({"question": QUESTION}, context=context)  # warm-up
        gc.collect()
        tracemalloc.start()
        base_heap, base_rss = tracemalloc.get_traced_memory()[0] / 2**20, rss_mb()
        rows = []
        for number in range(1, args.waves + 1):
            heap, rss = await wave(graph, context, args.runs, args.latency_ms / 1000)
            gc.collect()
            after_heap, after_rss = tracemalloc.get_traced_memory()[0] / 2**20, rss_mb()
            rows.append(
                (
                    number,
                    heap - base_heap,
                    1024 * (heap - base_heap) / args.runs,
                    rss - base_rss,
                    after_heap - base_heap,
                    after_rss - base_rss,
                )
            )
        tracemalloc.stop()
    print(f"{args.runs} concurrent runs (N=4) per wave; deltas from before the first wave\n")
    print(
        table(
            [
                "wave",
                "heap in flight (MB)",
                "heap per run (KB)",
                "RSS in flight (MB)",
                "heap after (MB)",
                "RSS after (MB)",
            ],
            rows,
        )
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=2000.0)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
