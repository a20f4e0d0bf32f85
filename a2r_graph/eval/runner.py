"""Run A2R over a benchmark: K explorer samples per problem, a synthesis per N, resumably.

Per problem and repetition, one graph run samples K paths and synthesizes over all K; for each
smaller N the synthesizer runs again over the first N of the *same* paths (a thread seeded with
them, so Cons@N, Pass@N and A2R@N all judge one set of samples). Each finished problem is one
line appended to ``results.jsonl``: its paths (answer components, boxed answers, usage,
correctness) and each N's synthesis, the saved samples that RL curation reads later. A rerun
skips the finished lines; a problem cut off mid-run resumes on its SQLite thread without
sampling its finished explorers again.

A problem that fails (an ``A2RError``: a server down through every retry, too few usable
paths, a failed synthesis for some N, or an explorer path the server never answered) is not
a wrong answer: its line is written marked ``"failed": true`` with the error (and no samples),
it counts as not finished, and a rerun retries it on its thread (the explorer paths the server
answered are not sampled again). ``read_results`` returns the finished lines only (what the
report and curation read).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from a2r_graph import threads
from a2r_graph.context import A2RContext
from a2r_graph.errors import A2RError, UnknownThreadError
from a2r_graph.eval.data import Problem
from a2r_graph.eval.metrics import majority_vote, pass_at_n
from a2r_graph.eval.policies import replay, variant_context
from a2r_graph.eval.verify import Verifier
from a2r_graph.state import A2ROutput, sum_usage

if TYPE_CHECKING:
    from a2r_graph.graph import A2RGraph

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "results.json"
NO_POLICIES = {"shortcut": False, "waves": (), "top_references": None, "budget": None}


def result_key(problem_id: str, repetition: int) -> str:
    return f"{problem_id}#{repetition}"


def is_failed(line: dict[str, Any]) -> bool:
    """A line of a problem that did not finish (also the unmarked failed lines of older
    versions: an ``error``, or one in some N's cell)."""
    return bool(
        line.get("failed")
        or "error" in line
        or any("error" in cell for cell in line.get("by_n", {}).values())
    )


def read_results(results_path: Path, *, failed: bool = False) -> list[dict[str, Any]]:
    """The finished lines of ``results.jsonl`` (none if it is missing; a torn last line is
    skipped); with ``failed=True`` the lines of failed attempts too."""
    if not results_path.is_file():
        return []
    rows = []
    for line in results_path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and (failed or not is_failed(row)):
            rows.append(row)
    return rows


def finished_keys(results_path: Path) -> set[str]:
    """Keys of the problems finished in ``results.jsonl`` (failed ones are not: rerun them)."""
    return {row["key"] for row in read_results(results_path) if "key" in row}


def _end_torn_line(results_path: Path) -> None:
    """A crash mid-write leaves a partial last line: end it, so the next line starts clean."""
    if results_path.is_file() and results_path.stat().st_size:
        with results_path.open("rb+") as results:
            results.seek(-1, 2)
            if results.read(1) != b"\n":
                results.write(b"\n")


async def synthesize_over(
    graph: A2RGraph,
    thread_id: str,
    question: str,
    paths: Sequence[Mapping[str, Any]],
    context: A2RContext,
) -> dict[str, Any]:
    """The synthesizer over ``paths`` on a new thread (no explorer call): the graph resumed
    after an ``explore`` step whose output is these paths."""
    config = threads.thread_config(thread_id)
    snapshot = await graph.aget_state(config)
    if not snapshot.values:
        update = {"question": question, "explored_question": question, "paths": paths}
        await graph.aupdate_state(config, update, as_node="explore")
    return _plain(await threads.resume(graph, thread_id, context))


def _plain(output: A2ROutput) -> dict[str, Any]:
    """A run's output as the plain dict the eval reads and writes."""
    return cast(dict[str, Any], output)


async def evaluate_problem(
    graph: A2RGraph,
    problem: Problem,
    repetition: int,
    ns: Sequence[int],
    context: A2RContext,
    verifier: Verifier,
    run_name: str,
    *,
    alone: int = 0,
    variants: Sequence[str] = (),
    saved_paths: Sequence[Mapping[str, Any]] | None = None,
    kept: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One problem, one repetition: the JSON line of ``results.jsonl``. With ``alone`` > 0,
    the synthesizer's model also answers alone that many times (the baseline A2R must beat);
    each of ``variants`` (``eval.policies.VARIANTS``) is one more synthesis at the largest N.
    With ``saved_paths`` (a results line's ``paths``) no explorer is called: the synthesizer
    runs over those samples, whose usage and cost are counted as when they were sampled.
    With ``kept`` (a whole results line of the same synthesizer) only the variants run: the
    line's paths, syntheses and policies are taken as they are."""
    started = time.perf_counter()
    k = context.n
    thread_id = f"{run_name}/{problem.id}/{repetition}"
    # every sample is explored and synthesized: the policies are judged by replaying them
    context = context.model_copy(update=dict(NO_POLICIES))
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
        **({"group": problem.group} if problem.group else {}),
        "k": k,
        "thread_id": thread_id,
    }

    def failed(error: str) -> dict[str, Any]:
        return {**line, "failed": True, "error": error, "paths": [], "by_n": {}}

    timed_out: set[tuple[str, str | None]] = set()

    async def correct(gold: str, prediction: str | None) -> bool:
        result = await verifier.correct(gold, prediction)
        if (gold, prediction) in verifier.timed_out:
            timed_out.add((gold, prediction))
        return result

    top = max(ns)
    if kept is not None:
        try:
            cells = await variant_cells(
                graph,
                thread_id,
                problem,
                replayed(kept["paths"]),
                kept["paths"][:top],
                seeded,
                variants,
                correct,
            )
        except A2RError as error:
            return failed(f"variants: {type(error).__name__}: {error}")
        return {
            **line,
            **{key: kept[key] for key in ("paths", "alone") if key in kept},
            "by_n": {str(n): kept["by_n"][str(n)] for n in ns},
            "policies": {**kept["policies"], **cells},
            "verify_timeouts": kept.get("verify_timeouts", 0) + len(timed_out),
            "wall_s": time.perf_counter() - started,
        }
    try:
        if saved_paths is not None:
            full = await synthesize_over(
                graph, thread_id, problem.problem, replayed(saved_paths), seeded
            )
        else:
            full = await _explore_and_synthesize(graph, problem, thread_id, seeded)
    except A2RError as error:
        return failed(f"{type(error).__name__}: {error}")
    if unanswered := _unanswered(full):
        return failed(
            f"the explorer server did not answer path(s) {[p['index'] for p in unanswered]}: "
            f"{unanswered[0]['error']}"
        )
    paths: list[dict[str, Any]] = [
        {
            "index": p["index"],
            "boxed": p["boxed"],
            "answer": p["answer"],
            "error": p["error"],
            "usage": p["usage"],
            "confidence": p.get("confidence"),
            "correct": await correct(problem.answer, p["boxed"]),
        }
        for p in full["paths"]
    ]
    alone_paths: list[dict[str, Any]] = []
    if alone:
        try:
            solo = alone_context(context, alone, repetition)
            sampled = await sample_alone(graph, f"{thread_id}/alone", problem.problem, solo)
        except A2RError as error:
            return failed(f"synthesizer alone: {type(error).__name__}: {error}")
        if unanswered := _unanswered({"paths": sampled}):
            return failed(f"synthesizer alone: the server did not answer: {unanswered[0]['error']}")
        alone_paths = [
            {
                "index": p["index"],
                "boxed": p["boxed"],
                "usage": p["usage"],
                "correct": await correct(problem.answer, p["boxed"]),
            }
            for p in sampled
        ]
        try:  # the synthesizer's model in both stages: A2R over its own K samples
            own_context = context.model_copy(
                update={"n": len(sampled), "min_paths": min(context.min_paths, len(sampled))}
            )
            own = await synthesize_over(
                graph, f"{thread_id}/alone/A2R", problem.problem, sampled, own_context
            )
        except A2RError as error:
            return failed(f"synthesizer alone, A2R: {type(error).__name__}: {error}")
        alone_a2r = {
            "boxed": own["boxed_answer"],
            "correct": await correct(problem.answer, own["boxed_answer"]),
            "usage": sum_usage([*(p["usage"] for p in sampled), own["synthesis"]["usage"]]),
        }
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
                return failed(f"N={n}: {type(error).__name__}: {error}")
        first = paths[:n]
        consensus = await majority_vote([p["boxed"] for p in first], correct)
        by_n[str(n)] = {
            "a2r_boxed": synthesis["boxed_answer"],
            "a2r_finish_reason": synthesis["synthesis"]["finish_reason"],
            "a2r_correct": await correct(problem.answer, synthesis["boxed_answer"]),
            "cons_answer": consensus,
            "cons_correct": await correct(problem.answer, consensus),
            "pass_at_n": pass_at_n([p["correct"] for p in paths], n),
            "explore_usage": sum_usage(p["usage"] for p in first),
            "synthesize_usage": synthesis["synthesis"]["usage"],
        }
        if n <= len(alone_paths):
            alone_vote = await majority_vote([p["boxed"] for p in alone_paths[:n]], correct)
            by_n[str(n)]["alone_cons_correct"] = await correct(problem.answer, alone_vote)
            by_n[str(n)]["alone_usage"] = sum_usage(p["usage"] for p in alone_paths[:n])

    async def synthesize_top(chosen: list[dict[str, Any]]) -> dict[str, Any]:
        subset = [  # renumbered: a run's paths are 0..n-1
            {**full["paths"][p["index"]], "index": i} for i, p in enumerate(chosen)
        ]
        n_context = seeded.model_copy(update={"n": len(subset), "min_paths": 1})
        return await synthesize_over(
            graph, f"{thread_id}/top{len(subset)}of{top}", problem.problem, subset, n_context
        )

    try:
        policies = await replay(
            paths, by_n, top, problem.answer, correct, context.confidence, synthesize_top
        )
        policies |= await variant_cells(
            graph, thread_id, problem, full["paths"], paths[:top], seeded, variants, correct
        )
        if alone:
            policies["alone_a2r"] = alone_a2r
    except A2RError as error:
        return failed(f"policies: {type(error).__name__}: {error}")
    return {
        **line,
        "paths": paths,
        **({"alone": alone_paths} if alone else {}),
        "by_n": by_n,
        "policies": policies,
        "verify_timeouts": len(timed_out),
        "wall_s": time.perf_counter() - started,
    }


async def variant_cells(
    graph: A2RGraph,
    thread_id: str,
    problem: Problem,
    explored: Sequence[Mapping[str, Any]],
    paths: Sequence[Mapping[str, Any]],
    context: A2RContext,
    variants: Sequence[str],
    correct: Callable[[str, str | None], Awaitable[bool]],
) -> dict[str, dict[str, Any]]:
    """Each variant's synthesis over the first ``len(paths)`` of ``explored`` (the graph's
    paths; ``paths`` are their results lines, whose usage is counted), all at once: the
    server batches them."""
    top = len(paths)

    async def cell(variant: str) -> dict[str, Any]:
        v_context = variant_context(context.model_copy(update={"n": top}), variant)
        synthesis = await synthesize_over(
            graph, f"{thread_id}/N{top}/{variant}", problem.problem, explored[:top], v_context
        )
        return {
            "boxed": synthesis["boxed_answer"],
            "correct": await correct(problem.answer, synthesis["boxed_answer"]),
            "usage": sum_usage([*(p["usage"] for p in paths), synthesis["synthesis"]["usage"]]),
        }

    cells = await asyncio.gather(*(cell(v) for v in variants))
    return dict(zip(variants, cells, strict=True))


async def _explore_and_synthesize(
    graph: A2RGraph, problem: Problem, thread_id: str, context: A2RContext
) -> dict[str, Any]:
    """The whole run on ``thread_id``; a thread from an earlier eval is finished, or its saved
    result taken, and the explorer paths the server failed are sampled again."""
    try:
        full = _plain(await threads.resume(graph, thread_id, context))
        if _unanswered(full):
            await reopen(graph, thread_id)
            full = _plain(await threads.resume(graph, thread_id, context))
    except UnknownThreadError:
        full = _plain(await threads.ask(graph, problem.problem, thread_id, context))
    return full


SAVED_PATH_FIELDS = ("index", "answer", "boxed", "error", "usage")
"""What a results line keeps of each explorer path (with its confidence; not its trace)."""


def replayed(saved: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A results line's paths as the graph's explorer paths."""
    return [
        {
            **{key: path[key] for key in SAVED_PATH_FIELDS},
            "confidence": path.get("confidence"),
            "model": "",
            "trace": "",
            "finish_reason": None,
            "answered": True,
        }
        for path in saved
    ]


def alone_context(context: A2RContext, k: int, repetition: int = 0) -> A2RContext:
    """The synthesizer's model as K independent samplers of the explorer prompt (seeds, if
    set, advance by K per repetition, as the explorers' do)."""
    stage = context.synthesizer
    if stage.seed is not None:
        stage = stage.model_copy(update={"seed": stage.seed + repetition * k})
    return context.model_copy(update={"explorer": stage, "n": k, "min_paths": 1})


async def sample_alone(
    graph: A2RGraph, thread_id: str, question: str, context: A2RContext
) -> list[dict[str, Any]]:
    """``context.n`` samples of ``context.explorer`` answering alone: the graph's run stopped
    before its synthesis, on a thread of its own (so a rerun samples only what is missing)."""
    config = threads.thread_config(thread_id)
    snapshot = await graph.aget_state(config)
    if snapshot.next != ("reduce",) or _unanswered(snapshot.values):
        await threads.run(
            graph, {"question": question}, thread_id, context, interrupt_before=["reduce"]
        )
        snapshot = await graph.aget_state(config)
    return snapshot.values["paths"]


def _unanswered(output: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The explorer paths the server never answered (a failure, not a wrong sample)."""
    return [p for p in output["paths"] if not p.get("answered", True)]


async def reopen(graph: A2RGraph, thread_id: str) -> None:
    """Make a finished run unfinished again, so that resuming it asks the question anew and
    ``dispatch`` keeps the answered paths, sampling only the unanswered ones."""
    config = threads.thread_config(thread_id)
    await graph.aupdate_state(config, {"synthesis": None}, as_node="explore")


async def run_eval(
    graph: A2RGraph,
    problems: Sequence[Problem],
    *,
    ns: Sequence[int],
    context: A2RContext,
    out_dir: Path,
    runs: int = 1,
    concurrency: int = 4,
    run_name: str = "eval",
    verifier: Verifier,
    alone: int = 0,
    variants: Sequence[str] = (),
    saved: Mapping[str, Mapping[str, Any]] | None = None,
    keep_syntheses: bool = False,
    on_result: Callable[[dict[str, Any]], None] = lambda line: None,
) -> Path:
    """Evaluate every (problem, repetition) not finished in ``out_dir/results.jsonl``, at most
    ``concurrency`` at once; each line (finished, or marked failed) is appended and passed to
    ``on_result``. With ``saved`` (lines of an earlier eval by key), each problem's explorer
    paths are that line's (``evaluate_problem``'s ``saved_paths``); a problem without one is
    left out. With ``keep_syntheses`` too, only the variants run: the rest of each line is the
    saved one's (``evaluate_problem``'s ``kept``)."""
    if concurrency < 1 or runs < 1:
        raise ValueError(f"concurrency and runs must be >= 1, got {concurrency} and {runs}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    done = finished_keys(results_path)
    _end_torn_line(results_path)
    todo = [
        (problem, repetition)
        for repetition in range(runs)
        for problem in problems
        if result_key(problem.id, repetition) not in done
        and (saved is None or result_key(problem.id, repetition) in saved)
    ]
    gate = asyncio.Semaphore(concurrency)
    write = asyncio.Lock()

    async def one(problem: Problem, repetition: int) -> None:
        problem_key = result_key(problem.id, repetition)
        async with gate:
            line = await evaluate_problem(
                graph,
                problem,
                repetition,
                ns,
                context,
                verifier,
                run_name,
                alone=alone,
                variants=variants,
                saved_paths=None if saved is None else saved[problem_key]["paths"],
                kept=saved[problem_key] if saved is not None and keep_syntheses else None,
            )
        async with write:
            with results_path.open("a", encoding="utf-8") as results:
                results.write(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n")
        on_result(line)

    await asyncio.gather(*(one(problem, repetition) for problem, repetition in todo))
    return results_path
