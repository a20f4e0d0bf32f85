"""Run A2R over a benchmark: K explorer samples per problem, a synthesis per N, resumably.

Per problem and repetition, one graph run samples K paths and synthesizes over all K; for each
smaller N the synthesizer runs again over the first N of the *same* paths (a thread seeded with
them, so Cons@N, Pass@N and A2R@N all judge one set of samples). Each finished problem is one
line appended to ``results.jsonl``: its paths (answer components, boxed answers, usage,
correctness) and each N's synthesis, the saved samples that RL curation reads later. A rerun
skips the finished lines; a problem cut off mid-run resumes on its SQLite thread without
sampling its finished explorers again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from a2r_graph import threads
from a2r_graph.context import A2RContext
from a2r_graph.errors import A2RError, UnknownThreadError
from a2r_graph.eval.data import Problem
from a2r_graph.eval.metrics import majority_vote, pass_at_n
from a2r_graph.eval.verify import Verifier

RESULTS_FILE = "results.jsonl"


def result_key(problem_id: str, repetition: int) -> str:
    return f"{problem_id}#{repetition}"


def read_results(results_path: Path) -> list[dict[str, Any]]:
    """The lines of ``results.jsonl`` (none if it is missing; a torn last line is skipped)."""
    if not results_path.is_file():
        return []
    rows = []
    for line in results_path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def finished_keys(results_path: Path) -> set[str]:
    """Keys of the problems already in ``results.jsonl``."""
    return {row["key"] for row in read_results(results_path) if "key" in row}


def _end_torn_line(results_path: Path) -> None:
    """A crash mid-write leaves a partial last line: end it, so the next line starts clean."""
    if results_path.is_file() and results_path.stat().st_size:
        with results_path.open("rb+") as results:
            results.seek(-1, 2)
            if results.read(1) != b"\n":
                results.write(b"\n")


async def synthesize_over(
    graph: CompiledStateGraph,
    thread_id: str,
    question: str,
    paths: list[dict],
    context: A2RContext,
) -> dict:
    """The synthesizer over ``paths`` on a new thread (no explorer call): the graph resumed
    after an ``explore`` step whose output is these paths."""
    config = threads.thread_config(thread_id)
    snapshot = await graph.aget_state(config)
    if not snapshot.values:
        update = {"question": question, "explored_question": question, "paths": paths}
        await graph.aupdate_state(config, update, as_node="explore")
    return await threads.resume(graph, thread_id, context)


async def evaluate_problem(
    graph: CompiledStateGraph,
    problem: Problem,
    repetition: int,
    ns: Sequence[int],
    context: A2RContext,
    verifier: Verifier,
    run_name: str,
) -> dict[str, Any]:
    """One problem, one repetition: the JSON line of ``results.jsonl``."""
    started = time.perf_counter()
    k = context.n
    thread_id = f"{run_name}/{problem.id}/{repetition}"
    seeded = context
    if context.explorer.seed is not None:  # repetitions sample different paths
        explorer = context.explorer.model_copy(
            update={"seed": context.explorer.seed + repetition * k}
        )
        seeded = context.model_copy(update={"explorer": explorer})
    line: dict[str, Any] = {
        "key": result_key(problem.id, repetition),
        "id": problem.id,
        "repetition": repetition,
        "problem": problem.problem,
        "gold": problem.answer,
        "k": k,
        "thread_id": thread_id,
    }
    try:
        try:  # a thread from an interrupted eval: finish it, or take its saved result
            full = await threads.resume(graph, thread_id, seeded)
        except UnknownThreadError:
            full = await threads.ask(graph, problem.problem, thread_id, seeded)
    except A2RError as error:
        return {**line, "error": f"{type(error).__name__}: {error}", "paths": [], "by_n": {}}
    paths = [
        {
            "index": p["index"],
            "boxed": p["boxed"],
            "answer": p["answer"],
            "error": p["error"],
            "usage": p["usage"],
            "correct": await verifier.correct(problem.answer, p["boxed"]),
        }
        for p in full["paths"]
    ]
    by_n: dict[str, Any] = {}
    for n in ns:
        synthesis = full
        if n < k:
            subset = full["paths"][:n]
            n_context = seeded.model_copy(update={"n": n, "min_paths": min(seeded.min_paths, n)})
            try:
                synthesis = await synthesize_over(
                    graph, f"{thread_id}/N{n}", problem.problem, subset, n_context
                )
            except A2RError as error:
                by_n[str(n)] = {"error": f"{type(error).__name__}: {error}"}
                continue
        first = paths[:n]
        consensus = await majority_vote(
            [p["boxed"] for p in first], lambda a, b: verifier.correct(a, b)
        )
        by_n[str(n)] = {
            "a2r_boxed": synthesis["boxed_answer"],
            "a2r_correct": await verifier.correct(problem.answer, synthesis["boxed_answer"]),
            "cons_answer": consensus,
            "cons_correct": await verifier.correct(problem.answer, consensus),
            "pass_at_n": pass_at_n([p["correct"] for p in paths], n),
            "explore_usage": _sum_usage(p["usage"] for p in first),
            "synthesize_usage": synthesis["synthesis"]["usage"],
        }
    return {**line, "paths": paths, "by_n": by_n, "wall_s": time.perf_counter() - started}


def _sum_usage(usages) -> dict[str, float]:
    total = {"input_tokens": 0, "output_tokens": 0, "cost": 0.0}
    for usage in usages:
        for key in total:
            total[key] += usage[key]
    return total


async def run_eval(
    graph: CompiledStateGraph,
    problems: Sequence[Problem],
    *,
    ns: Sequence[int],
    context: A2RContext,
    out_dir: Path,
    runs: int = 1,
    concurrency: int = 4,
    run_name: str = "eval",
    verifier: Verifier,
    on_result: Callable[[dict[str, Any]], None] = lambda line: None,
) -> Path:
    """Evaluate every (problem, repetition) not yet in ``out_dir/results.jsonl``, at most
    ``concurrency`` at once; each finished one is appended (and passed to ``on_result``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    done = finished_keys(results_path)
    _end_torn_line(results_path)
    todo = [
        (problem, repetition)
        for repetition in range(runs)
        for problem in problems
        if result_key(problem.id, repetition) not in done
    ]
    gate = asyncio.Semaphore(concurrency)
    write = asyncio.Lock()

    async def one(problem: Problem, repetition: int) -> None:
        async with gate:
            line = await evaluate_problem(
                graph, problem, repetition, ns, context, verifier, run_name
            )
        async with write:
            with results_path.open("a", encoding="utf-8") as results:
                results.write(json.dumps(line, ensure_ascii=False) + "\n")
        on_result(line)

    await asyncio.gather(*(one(problem, repetition) for problem, repetition in todo))
    return results_path
