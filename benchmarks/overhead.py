"""Orchestration overhead: the A2R graph against the physical limit, on a loopback server.

The limit is what A2R cannot go below: the same N explorer calls at once with a bare
``openai`` client (``asyncio.gather``), then the same synthesizer call. Both go to the loopback
OpenAI-compatible server (``tests/loopback.py``, its own process) which answers every request
after a fixed latency, so any difference is the graph's own cost: LangGraph, LangChain's chat
model, retries, parsing, usage and cost accounting, the tracer callback.

    python -m benchmarks.overhead [--latency-ms 500] [--n 1 4 16 64] [--repeats 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from a2r_graph import A2RContext, build_graph
from a2r_graph.answers import last_boxed, split_reasoning
from a2r_graph.prompts import render_explorer_prompt, render_synthesizer_prompt
from benchmarks.common import machine, median_ms, table
from tests.loopback import LoopbackServer

QUESTION = "A crate holds 1234 apples and 4321 more arrive. What is 1234 + 4321?"
MAX_TOKENS = 256


def context_for(base_url: str, n: int) -> A2RContext:
    stage = {"base_url": base_url, "max_tokens": MAX_TOKENS, "context_window": 32768}
    return A2RContext(
        explorer={**stage, "model": "explore"},
        synthesizer={**stage, "model": "synth"},
        n=n,
        synthesis_mode="synthesize",  # against raw A2R, which always synthesizes
    )


async def raw_a2r(client: openai.AsyncOpenAI, n: int) -> str | None:
    """A2R with nothing but the openai client: the floor the graph is measured against."""

    async def chat(model: str, prompt: str, seed: int | None = None):
        return await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=MAX_TOKENS,
            temperature=0.6,
            top_p=0.95,
            seed=seed,
        )

    prompt = render_explorer_prompt(QUESTION)
    replies = await asyncio.gather(*(chat("explore", prompt, i) for i in range(n)))
    answers = [split_reasoning(r.choices[0].message.content or "")[1] for r in replies]
    synthesis = await chat("synth", render_synthesizer_prompt(QUESTION, answers))
    return last_boxed(synthesis.choices[0].message.content or "")


async def timed(make_run, repeats: int) -> list[float]:
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        await make_run()
        walls.append(time.perf_counter() - started)
    return walls


def raw_client(server: LoopbackServer) -> openai.AsyncOpenAI:
    # Closed by its user: an AsyncOpenAI left to the garbage collector closes its pool from
    # __del__, which was seen here to cut live connections of other clients (lost requests).
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)


async def overhead_table(server: LoopbackServer, ns: list[int], repeats: int) -> str:
    async with raw_client(server) as client:
        return await _overhead_table(client, server, ns, repeats)


async def _overhead_table(
    client: openai.AsyncOpenAI, server: LoopbackServer, ns: list[int], repeats: int
) -> str:
    plain = build_graph()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    traced = build_graph(tracer_provider=provider)
    rows = []
    for n in ns:
        context = context_for(server.base_url, n)

        async def graph_run(graph=plain, context=context):
            result = await graph.ainvoke({"question": QUESTION}, context=context)
            assert result["boxed_answer"] == "5555", result["boxed_answer"]

        async def raw_run(n=n):
            assert await raw_a2r(client, n) == "5555"

        for run in (raw_run, graph_run):  # warm-up: connections, imports, first compile
            await run()
        raw, graph, with_spans = [], [], []
        for _ in range(repeats):  # interleaved, so drift hits all three alike
            raw += await timed(raw_run, 1)
            graph += await timed(graph_run, 1)
            with_spans += await timed(lambda: graph_run(traced), 1)
        r, g, t = median_ms(raw), median_ms(graph), median_ms(with_spans)
        rows.append((n, r, g, t, g / r, g - r, t - r))
    return table(
        [
            "N",
            "raw gather (ms)",
            "graph (ms)",
            "graph + OTel spans (ms)",
            "ratio",
            "overhead (ms)",
            "overhead with spans (ms)",
        ],
        rows,
    )


async def throughput_table(server: LoopbackServer, runs: int, in_flight: int) -> str:
    async with raw_client(server) as client:
        return await _throughput_table(client, server, runs, in_flight)


async def _throughput_table(
    client: openai.AsyncOpenAI, server: LoopbackServer, runs: int, in_flight: int
) -> str:
    graph = build_graph()
    context = context_for(server.base_url, 4)
    rows = []
    for name, one in (
        ("raw gather", lambda: raw_a2r(client, 4)),
        ("graph", lambda: graph.ainvoke({"question": QUESTION}, context=context)),
    ):
        await one()
        for concurrency in (1, in_flight):
            gate = asyncio.Semaphore(concurrency)

            async def gated(one=one, gate=gate):
                async with gate:
                    await one()

            started = time.perf_counter()
            await asyncio.gather(*(gated() for _ in range(runs)))
            wall = time.perf_counter() - started
            rows.append((name, concurrency, runs, wall, runs / wall, 1000 * wall / runs))
    return table(["", "in flight", "runs", "wall (s)", "runs/s", "ms per run"], rows)


async def main(args: argparse.Namespace) -> None:
    print(f"# Orchestration overhead\n\nmachine: {machine()}\n")
    with LoopbackServer(models=("explore", "synth"), latency_ms=args.latency_ms) as server:
        print(
            f"## A2R graph vs raw asyncio.gather, loopback server at {args.latency_ms:.0f} ms "
            f"per reply (median of {args.repeats})\n"
        )
        print(await overhead_table(server, args.n, args.repeats), "\n", flush=True)
    with LoopbackServer(models=("explore", "synth"), latency_ms=0) as server:
        print(f"## Runs per second, N=4, zero-latency loopback server ({args.runs} runs)\n")
        print(await throughput_table(server, args.runs, args.in_flight), "\n")


def cli() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=500.0)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200, help="runs for the runs/s table")
    parser.add_argument("--in-flight", type=int, default=16)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
