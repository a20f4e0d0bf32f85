"""R2R's routed loop on the embedded llama.cpp engine: what each model call costs beyond the
server's own compute, how much of each prompt the servers' prefix caches reuse, and how many
tokens the SLM server generates past a flagged token before it sees the stream closed.

Layouts: ``one`` (one server plays both roles: one slot, one cache), ``two`` (a server per
role, sharing the CPUs), ``pinned`` (a server per role, each on its own CPUs). ``--threshold``
is the entropy router's; the baseline row routes nothing (the SLM alone, through the same
client).

    python -m benchmarks.r2r_loop [--model smollm2-135m] [--layouts one two pinned]
        [--questions 3] [--max-tokens 64] [--threshold 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.graph import build_r2r_graph
from benchmarks.common import machine, table
from servers.engines import EmbeddedLlamaCpp, allowed_cpus
from tests.integration.conftest import Server

QUESTIONS = [
    "What is 6*7?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "A rectangle is 3 cm wide and 5 cm long. What is its area?",
    "Tom has 12 apples and gives away 5. How many are left?",
]
COUNTERS = (
    "llamacpp:tokens_predicted_total",
    "llamacpp:prompt_tokens_total",
    "llamacpp:prompt_tokens_cached_total",
    "llamacpp:prompt_seconds_total",
    "llamacpp:tokens_predicted_seconds_total",
)


@dataclass
class Measured:
    wall_s: float
    outputs: list[dict]
    spans: list
    server: dict[str, dict[str, float]]


async def run_layout(slm: Server, llm: Server, args: argparse.Namespace, threshold: float):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    graph = build_r2r_graph(tracer_provider=provider)
    stage = {"temperature": 0.0}
    context = R2RContext(
        explorer={"base_url": slm.base_url, "model": slm.model_name, **stage},
        synthesizer={"base_url": llm.base_url, "model": llm.model_name, **stage},
        r2r={"threshold": threshold, "max_tokens": args.max_tokens, "top_k": 5},
    )
    servers = {"slm": slm, "llm": llm} if slm.base_url != llm.base_url else {"slm": slm}
    before = {role: server.counters(*COUNTERS) for role, server in servers.items()}
    started, outputs = time.perf_counter(), []
    for question in QUESTIONS[: args.questions]:
        outputs.append(await graph.ainvoke({"question": question}, context=context))
    wall = time.perf_counter() - started
    await asyncio.sleep(0.5)
    after = {role: server.counters(*COUNTERS) for role, server in servers.items()}
    server = {
        role: {name: after[role][name] - before[role][name] for name in COUNTERS}
        for role in servers
    }
    return Measured(wall, outputs, list(exporter.get_finished_spans()), server)


def rows(layout: str, measured: Measured) -> list[list[object]]:
    runs = len(measured.outputs)
    tokens = sum(sum(o["tokens"].values()) for o in measured.outputs)
    switches = sum(o["switches"] for o in measured.outputs)
    lines = []
    counted_roles = list(measured.server)
    server_s = sum(
        c["llamacpp:prompt_seconds_total"] + c["llamacpp:tokens_predicted_seconds_total"]
        for c in measured.server.values()
    )
    calls = [s for s in measured.spans if s.name.startswith("text_completion")]
    call_s = sum((s.end_time - s.start_time) / 1e9 for s in calls)
    for role in ("slm", "llm"):
        mine = [s for s in calls if s.attributes["a2r.stage"] == role]
        if not mine:
            continue
        usage = [o["usage"][role] for o in measured.outputs]
        cached = sum(o["cached_input_tokens"][role] for o in measured.outputs)
        inputs = sum(u["input_tokens"] for u in usage)
        reported_out = sum(u["output_tokens"] for u in usage)
        prefilled = inputs - cached
        row: list[object] = [
            layout,
            role,
            len(mine),
            statistics.median((s.end_time - s.start_time) / 1e6 for s in mine),
            prefilled / len(mine),
            cached / max(inputs, 1),
        ]
        if len(counted_roles) == 2 or role == "slm":
            counted = measured.server[role if len(counted_roles) == 2 else "slm"]
            predicted = counted["llamacpp:tokens_predicted_total"]
            row.append(
                predicted - reported_out
                if len(counted_roles) == 2
                else predicted - sum(o["usage"]["total"]["output_tokens"] for o in measured.outputs)
            )
        else:
            row.append("")
        lines.append(row)
    overhead_ms = (call_s - server_s) / max(len(calls), 1) * 1000
    for line in lines:
        line += [
            measured.wall_s / runs,
            tokens / runs,
            switches / runs,
            overhead_ms,
        ]
    return lines


async def main_async(args: argparse.Namespace) -> None:
    print(
        f"machine: {machine()}\nmodel: {args.model}; {args.questions} question(s), "
        f"{args.max_tokens} tokens max, entropy threshold {args.threshold}\n"
    )
    results = []
    cpus = allowed_cpus()
    for layout in args.layouts:
        with ExitStack() as stack:
            if layout == "one":
                server = stack.enter_context(EmbeddedLlamaCpp(args.model, slots=1))
                slm = llm = Server(server.base_url, server.model_name)
            else:
                halves = [cpus[: len(cpus) // 2], cpus[len(cpus) // 2 :]]
                pinned = layout == "pinned" and len(cpus) > 1
                started = [
                    stack.enter_context(
                        EmbeddedLlamaCpp(args.model, slots=1, cpus=halves[i] if pinned else None)
                    )
                    for i in range(2)
                ]
                slm, llm = (Server(s.base_url, s.model_name) for s in started)
            for name, threshold in (("SLM alone", 1e9), (layout, args.threshold)):
                results += rows(name, await run_layout(slm, llm, args, threshold))
    headers = [
        "layout", "model", "calls", "call ms (median)", "prefilled/call", "cache reuse",
        "server overrun tokens", "s/run", "tokens/run", "switches/run", "overhead ms/call",
    ]  # fmt: skip
    print(table(headers, results))
    print(
        "\noverhead ms/call: the calls' wall time less the servers' prompt and generation "
        "time (llama.cpp /metrics), per call. server overrun: tokens the server generated "
        "beyond what the run reports (past flagged tokens; one server: both roles together)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layouts", nargs="+", default=["one", "two", "pinned"])
    for flag, kind, default in (
        ("questions", int, 3),
        ("max-tokens", int, 64),
        ("threshold", float, 1.0),
    ):
        parser.add_argument(f"--{flag}", type=kind, default=default)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
