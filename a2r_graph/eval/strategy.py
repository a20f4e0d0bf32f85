"""``a2r eval --graph NAME``: another registered strategy over the same problems as A2R.

Each (problem, repetition) is one run of the strategy's graph on a thread of the eval's
checkpoint database (``{run name}/{graph}/{problem id}/{repetition}``): a run cut off resumes
there, a finished run whose line was never written is taken as saved. Its ``boxed_answer``
is judged against the gold answer by the same ``Verifier`` as A2R's, and its line keeps the
usage per stage and the output's other numbers (``StrategyCell``). A run that raises is a
failed line (never a wrong answer), retried on the next run of the same command.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from a2r_graph import threads
from a2r_graph.eval.data import Problem
from a2r_graph.eval.results import ResultLine, StrategyCell, result_key
from a2r_graph.eval.verify import Verifier
from a2r_graph.serving.registry import Strategy

COMMON = ("question", "answer", "boxed_answer", "usage")
"""What every strategy's output holds; its other numeric fields are its ``metrics``."""


def metrics_of(output: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a run's output beside ``COMMON``; a nested mapping's as ``outer.inner``
    (e.g. tokens written per model). Booleans and text are left out."""
    found: dict[str, float] = {}
    for key, value in output.items():
        if not prefix and key in COMMON:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found |= metrics_of(value, f"{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = float(value)
    return found


async def run_once(graph: Any, problem: Problem, thread_id: str) -> dict[str, Any]:
    """The strategy's output for ``problem`` on ``thread_id``: an unfinished run of the same
    question is resumed, a finished one taken as saved, else the question is asked."""
    snapshot = await graph.aget_state(threads.thread_config(thread_id))
    if snapshot.values.get("question") == problem.problem:
        if not snapshot.next:
            return dict(snapshot.values)
        return await threads.run(graph, None, thread_id, None)
    return await threads.run(graph, {"question": problem.problem}, thread_id, None)


async def evaluate_run(
    strategy: Strategy,
    graph: Any,
    verifier: Verifier,
    run_name: str,
    problem: Problem,
    repetition: int,
) -> ResultLine:
    """The line of ``results.jsonl`` for one run of ``strategy``'s ``graph`` (built with the
    eval's checkpointer): finished, or failed. ``eval.runner.run_lines`` runs it for every
    (problem, repetition) not finished."""
    thread_id = f"{run_name}/{strategy.name}/{problem.id}/{repetition}"
    line: dict[str, Any] = {
        "key": result_key(problem.id, repetition),
        "id": problem.id,
        "repetition": repetition,
        "problem": problem.problem,
        "gold": problem.answer,
        "group": problem.group,
        "k": 1,
        "thread_id": thread_id,
        "graph": strategy.name,
        "paths": [],
        "by_n": {},
    }
    started = time.perf_counter()
    try:
        output = strategy.output_of(await run_once(graph, problem, thread_id))
        boxed = output.get("boxed_answer")
        cell = StrategyCell(
            boxed=boxed,
            correct=await verifier.correct(problem.answer, boxed),
            usage=output["usage"],
            metrics=metrics_of(output),
        )
    except Exception as error:  # noqa: BLE001 - any strategy's failure is the line's
        return ResultLine(**line, failed=True, error=f"{type(error).__name__}: {error}")
    timeouts = int((problem.answer, boxed) in verifier.timed_out)
    wall_s = time.perf_counter() - started
    return ResultLine(**line, strategy=cell, verify_timeouts=timeouts, wall_s=wall_s)
