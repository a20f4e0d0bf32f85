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
answered are not sampled again). The lines' schema and their reader are ``eval.results``.

Each attempt is judged in one of three modes: ``explored`` (the explorers sample),
``over_saved_paths`` (``--paths-from``: over an earlier eval's samples) and ``variants_only``
(``--keep-syntheses``: only the variants, the rest of the earlier line kept).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from a2r_graph import threads
from a2r_graph.context import VOTES, A2RContext
from a2r_graph.errors import A2RError, UnknownThreadError
from a2r_graph.eval.data import Problem
from a2r_graph.eval.metrics import majority_vote, pass_at_n
from a2r_graph.eval.policies import replay, variant_context
from a2r_graph.eval.results import (
    RESULTS_FILE,
    AloneSample,
    PolicyCell,
    ResultLine,
    SavedPath,
    Synthesis,
    Usage,
    append_result,
    drop_torn_line,
    finished_keys,
    result_key,
)
from a2r_graph.eval.verify import Verifier
from a2r_graph.state import A2ROutput

if TYPE_CHECKING:
    from a2r_graph.graph import A2RGraph

NO_POLICIES = {"shortcut": False, "waves": (), "top_references": None, "budget": None}


def without_policies(context: A2RContext) -> dict[str, Any]:
    """The fields that turn ``context``'s policies off, the vote modes included (the eval
    synthesizes every problem, and replays the votes: Cons@N and the policy block)."""
    votes = {"synthesis_mode": "synthesize"} if context.synthesis_mode in VOTES else {}
    return dict(NO_POLICIES) | votes


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


class _Failure(Exception):
    """The problem did not finish: its line is marked failed with this message."""


@contextmanager
def _failing_as(prefix: str = "") -> Iterator[None]:
    try:
        yield
    except A2RError as error:
        raise _Failure(f"{prefix}{type(error).__name__}: {error}") from error


@dataclass
class Attempt:
    """One problem, one repetition, on its thread: what every mode of the eval shares."""

    graph: A2RGraph
    problem: Problem
    repetition: int
    ns: Sequence[int]
    context: A2RContext
    """The eval's context with the policies off: every sample is explored and synthesized,
    and the policies are judged by replaying them."""
    verifier: Verifier
    thread_id: str
    timed_out: set[tuple[str, str | None]] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def of(
        cls,
        graph: A2RGraph,
        problem: Problem,
        repetition: int,
        ns: Sequence[int],
        context: A2RContext,
        verifier: Verifier,
        run_name: str,
    ) -> Attempt:
        context = context.model_copy(update=without_policies(context))
        thread_id = f"{run_name}/{problem.id}/{repetition}"
        return cls(graph, problem, repetition, ns, context, verifier, thread_id)

    @property
    def key(self) -> str:
        return result_key(self.problem.id, self.repetition)

    @property
    def top(self) -> int:
        return max(self.ns)

    @property
    def seeded(self) -> A2RContext:
        """The explorers' context: repetitions sample different paths."""
        explorer = self.context.explorer
        if explorer.seed is None:
            return self.context
        seed = explorer.seed + self.repetition * self.context.n
        return self.context.model_copy(
            update={"explorer": explorer.model_copy(update={"seed": seed})}
        )

    async def equivalent(self, gold: str, prediction: str | None) -> bool:
        result = await self.verifier.correct(gold, prediction)
        if (gold, prediction) in self.verifier.timed_out:
            self.timed_out.add((gold, prediction))
        return result

    async def correct(self, prediction: str | None) -> bool:
        return await self.equivalent(self.problem.answer, prediction)

    async def synthesize(
        self, name: str, paths: Sequence[Mapping[str, Any]], context: A2RContext
    ) -> dict[str, Any]:
        """The synthesizer over ``paths`` on this attempt's thread ``name`` (under its own)."""
        thread_id = f"{self.thread_id}/{name}" if name else self.thread_id
        return await synthesize_over(self.graph, thread_id, self.problem.problem, paths, context)

    def line(self, **fields: Any) -> ResultLine:
        return ResultLine(
            key=self.key,
            id=self.problem.id,
            repetition=self.repetition,
            problem=self.problem.problem,
            gold=self.problem.answer,
            group=self.problem.group,
            k=self.context.n,
            thread_id=self.thread_id,
            **fields,
        )

    def finished(self, **fields: Any) -> ResultLine:
        fields["verify_timeouts"] = fields.get("verify_timeouts", 0) + len(self.timed_out)
        return self.line(**fields, wall_s=time.perf_counter() - self.started)


Mode = Callable[[Attempt], Awaitable[ResultLine]]
"""How an attempt is judged: ``explored``, ``over_saved_paths`` or ``variants_only``."""


async def evaluate_problem(attempt: Attempt, mode: Mode) -> ResultLine:
    """The line of ``results.jsonl`` for ``attempt``: finished, or marked failed with why."""
    try:
        return await mode(attempt)
    except _Failure as failure:
        return attempt.line(failed=True, error=str(failure), paths=[], by_n={})


def explored(*, alone: int = 0, variants: Sequence[str] = ()) -> Mode:
    """The eval's own mode: the explorers sample K paths, then everything is judged over them.
    With ``alone`` > 0 the synthesizer's model also answers alone that many times (the baseline
    A2R must beat); each of ``variants`` (``eval.policies.VARIANTS``) is one more synthesis at
    the largest N."""

    async def judge(attempt: Attempt) -> ResultLine:
        with _failing_as():
            full = await _explore_and_synthesize(
                attempt.graph, attempt.problem, attempt.thread_id, attempt.seeded
            )
        return await _judged(attempt, full, alone, variants)

    return judge


def over_saved_paths(
    saved: Mapping[str, ResultLine], *, alone: int = 0, variants: Sequence[str] = ()
) -> Mode:
    """``--paths-from``: no explorer call; the synthesizer runs over the paths of the saved
    line of the same key, whose usage and cost are counted as when they were sampled."""

    async def judge(attempt: Attempt) -> ResultLine:
        with _failing_as():
            full = await attempt.synthesize("", replayed(saved[attempt.key].paths), attempt.seeded)
        return await _judged(attempt, full, alone, variants)

    return judge


def variants_only(saved: Mapping[str, ResultLine], variants: Sequence[str]) -> Mode:
    """``--keep-syntheses``: only the variants run over the saved line's paths (of the same
    synthesizer); its syntheses, policies and synthesizer alone are kept as they are."""

    async def judge(attempt: Attempt) -> ResultLine:
        kept = saved[attempt.key]
        with _failing_as("variants: "):
            cells = await variant_cells(attempt, replayed(kept.paths), kept.paths, variants)
        return attempt.finished(
            paths=kept.paths,
            alone=kept.alone,
            by_n={str(n): kept.by_n[str(n)] for n in attempt.ns},
            policies={**kept.policies, **cells},
            verify_timeouts=kept.verify_timeouts,
        )

    return judge


async def _judged(
    attempt: Attempt, full: dict[str, Any], alone: int, variants: Sequence[str]
) -> ResultLine:
    """Everything judged over the graph's run ``full`` (its K paths and synthesis at K)."""
    if unanswered := _unanswered(full["paths"]):
        raise _Failure(
            f"the explorer server did not answer path(s) {[p['index'] for p in unanswered]}: "
            f"{unanswered[0]['error']}"
        )
    paths = [await _judged_sample(SavedPath, attempt, p) for p in full["paths"]]
    samples, alone_a2r = await _alone(attempt, alone) if alone else ([], None)
    by_n = {str(n): await _synthesis_at(attempt, n, full, paths, samples) for n in attempt.ns}
    top = attempt.top

    async def synthesize_top(chosen: list[dict[str, Any]]) -> dict[str, Any]:
        subset = [  # renumbered: a run's paths are 0..n-1
            {**full["paths"][p["index"]], "index": i} for i, p in enumerate(chosen)
        ]
        n_context = attempt.seeded.model_copy(update={"n": len(subset), "min_paths": 1})
        return await attempt.synthesize(f"top{len(subset)}of{top}", subset, n_context)

    with _failing_as("policies: "):
        policies = await replay(
            paths,
            by_n,
            top,
            attempt.problem.answer,
            attempt.equivalent,
            attempt.context.confidence,
            synthesize_top,
        )
        policies |= await variant_cells(attempt, full["paths"], paths, variants)
    if alone_a2r is not None:
        policies["alone_a2r"] = alone_a2r
    return attempt.finished(paths=paths, alone=samples, by_n=by_n, policies=policies)


Sample = TypeVar("Sample", SavedPath, AloneSample)


async def _judged_sample(kind: type[Sample], attempt: Attempt, path: Mapping[str, Any]) -> Sample:
    """A graph's explorer path as the results line keeps it, with its correctness."""
    kept: dict[str, Any] = {n: path.get(n) for n in kind.model_fields if n != "correct"}
    return kind(**kept, correct=await attempt.correct(path["boxed"]))


async def _synthesis_at(
    attempt: Attempt,
    n: int,
    full: dict[str, Any],
    paths: list[SavedPath],
    samples: list[AloneSample],
) -> Synthesis:
    """A2R over the first ``n`` paths (``full``'s own synthesis at K), and their vote."""
    synthesis = full
    if n < attempt.context.n:
        seeded = attempt.seeded
        n_context = seeded.model_copy(update={"n": n, "min_paths": min(seeded.min_paths, n)})
        with _failing_as(f"N={n}: "):
            synthesis = await attempt.synthesize(f"N{n}", full["paths"][:n], n_context)
    first = paths[:n]
    consensus = await majority_vote([p.boxed for p in first], attempt.equivalent)
    cell = Synthesis(
        a2r_boxed=synthesis["boxed_answer"],
        a2r_finish_reason=synthesis["synthesis"]["finish_reason"],
        a2r_correct=await attempt.correct(synthesis["boxed_answer"]),
        cons_answer=consensus,
        cons_correct=await attempt.correct(consensus),
        pass_at_n=pass_at_n([p.correct for p in paths], n),
        explore_usage=Usage.total(p.usage for p in first),
        synthesize_usage=synthesis["synthesis"]["usage"],
    )
    if n <= len(samples):
        alone_vote = await majority_vote([p.boxed for p in samples[:n]], attempt.equivalent)
        cell.alone_cons_correct = await attempt.correct(alone_vote)
        cell.alone_usage = Usage.total(p.usage for p in samples[:n])
    return cell


async def _alone(attempt: Attempt, k: int) -> tuple[list[AloneSample], PolicyCell]:
    """The synthesizer's model answering alone ``k`` times, and A2R over its own samples (the
    synthesizer's model in both stages)."""
    question = attempt.problem.problem
    with _failing_as("synthesizer alone: "):
        solo = alone_context(attempt.context, k, attempt.repetition)
        sampled = await sample_alone(attempt.graph, f"{attempt.thread_id}/alone", question, solo)
    if unanswered := _unanswered(sampled):
        raise _Failure(f"synthesizer alone: the server did not answer: {unanswered[0]['error']}")
    samples = [await _judged_sample(AloneSample, attempt, p) for p in sampled]
    context = attempt.context
    own_context = context.model_copy(
        update={"n": len(sampled), "min_paths": min(context.min_paths, len(sampled))}
    )
    with _failing_as("synthesizer alone, A2R: "):
        own = await attempt.synthesize("alone/A2R", sampled, own_context)
    a2r = PolicyCell(
        boxed=own["boxed_answer"],
        correct=await attempt.correct(own["boxed_answer"]),
        usage=Usage.total([*(p["usage"] for p in sampled), own["synthesis"]["usage"]]),
    )
    return samples, a2r


async def variant_cells(
    attempt: Attempt,
    explored: Sequence[Mapping[str, Any]],
    paths: Sequence[SavedPath],
    variants: Sequence[str],
) -> dict[str, PolicyCell]:
    """Each variant's synthesis over the first N of ``explored`` (the graph's paths; ``paths``
    are their saved lines, whose usage is counted), at the largest N, all at once: the server
    batches them."""
    top = attempt.top
    first = paths[:top]

    async def cell(variant: str) -> PolicyCell:
        v_context = variant_context(attempt.seeded.model_copy(update={"n": top}), variant)
        synthesis = await attempt.synthesize(f"N{top}/{variant}", explored[:top], v_context)
        return PolicyCell(
            boxed=synthesis["boxed_answer"],
            correct=await attempt.correct(synthesis["boxed_answer"]),
            usage=Usage.total([*(p.usage for p in first), synthesis["synthesis"]["usage"]]),
        )

    cells = await asyncio.gather(*(cell(v) for v in variants))
    return dict(zip(variants, cells, strict=True))


async def _explore_and_synthesize(
    graph: A2RGraph, problem: Problem, thread_id: str, context: A2RContext
) -> dict[str, Any]:
    """The whole run on ``thread_id``; a thread from an earlier eval is finished, or its saved
    result taken, and the explorer paths the server failed are sampled again."""
    try:
        full = _plain(await threads.resume(graph, thread_id, context))
        if _unanswered(full["paths"]):
            await reopen(graph, thread_id)
            full = _plain(await threads.resume(graph, thread_id, context))
    except UnknownThreadError:
        full = _plain(await threads.ask(graph, problem.problem, thread_id, context))
    return full


def replayed(saved: Sequence[SavedPath]) -> list[dict[str, Any]]:
    """Saved paths as the graph's explorer paths."""
    return [
        {
            **path.model_dump(exclude={"correct"}),
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
    if snapshot.next != ("reduce",) or _unanswered(snapshot.values["paths"]):
        await threads.run(
            graph, {"question": question}, thread_id, context, interrupt_before=["reduce"]
        )
        snapshot = await graph.aget_state(config)
    return snapshot.values["paths"]


def _unanswered(paths: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The explorer paths the server never answered (a failure, not a wrong sample)."""
    return [p for p in paths if not p.get("answered", True)]


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
    saved: Mapping[str, ResultLine] | None = None,
    keep_syntheses: bool = False,
    on_result: Callable[[ResultLine], None] = lambda line: None,
) -> Path:
    """Evaluate every (problem, repetition) not finished in ``out_dir/results.jsonl``, at most
    ``concurrency`` at once; each line (finished, or marked failed) is appended and passed to
    ``on_result``. With ``saved`` (lines of an earlier eval by key), each problem's explorer
    paths are that line's (``over_saved_paths``); a problem without one is left out. With
    ``keep_syntheses`` too, only the variants run (``variants_only``)."""
    if saved is None:
        mode = explored(alone=alone, variants=variants)
    elif keep_syntheses:
        mode = variants_only(saved, variants)
    else:
        mode = over_saved_paths(saved, alone=alone, variants=variants)

    async def evaluate(problem: Problem, repetition: int) -> ResultLine:
        attempt = Attempt.of(graph, problem, repetition, ns, context, verifier, run_name)
        return await evaluate_problem(attempt, mode)

    return await run_lines(
        problems,
        evaluate,
        out_dir=out_dir,
        runs=runs,
        concurrency=concurrency,
        on_result=on_result,
        only=None if saved is None else saved.keys(),
    )


async def run_lines(
    problems: Sequence[Problem],
    evaluate: Callable[[Problem, int], Awaitable[ResultLine]],
    *,
    out_dir: Path,
    runs: int = 1,
    concurrency: int = 4,
    on_result: Callable[[ResultLine], None] = lambda line: None,
    only: Collection[str] | None = None,
) -> Path:
    """``evaluate`` each (problem, repetition) not finished in ``out_dir/results.jsonl`` (and,
    with ``only``, whose key is in it), at most ``concurrency`` at once; each line is appended
    and passed to ``on_result``. Any eval's loop: A2R's (``run_eval``) or another
    strategy's (``eval.strategy``)."""
    if concurrency < 1 or runs < 1:
        raise ValueError(f"concurrency and runs must be >= 1, got {concurrency} and {runs}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    done = finished_keys(results_path)
    drop_torn_line(results_path)
    todo = [
        (problem, repetition)
        for repetition in range(runs)
        for problem in problems
        if result_key(problem.id, repetition) not in done
        and (only is None or result_key(problem.id, repetition) in only)
    ]
    gate = asyncio.Semaphore(concurrency)
    write = asyncio.Lock()

    async def one(problem: Problem, repetition: int) -> None:
        async with gate:
            line = await evaluate(problem, repetition)
        async with write:
            append_result(results_path, line)
        on_result(line)

    await asyncio.gather(*(one(problem, repetition) for problem, repetition in todo))
    return results_path
