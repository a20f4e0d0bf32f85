"""``a2r eval``: the harness from the command line (progress, table, JSON, plot)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver

from a2r_graph.context import A2RContext
from a2r_graph.eval.data import Fields, Problem, load_problems
from a2r_graph.eval.policies import VARIANTS
from a2r_graph.eval.recommend import (
    parse_objective,
    read_recommendation,
    recommend,
    recommendation_text,
)
from a2r_graph.eval.report import (
    markdown_table,
    plot_accuracy_vs_cost,
    plot_strategy,
    strategy_table,
    summarize,
    summarize_strategy,
)
from a2r_graph.eval.results import (
    RESULTS_FILE,
    SUMMARY_FILE,
    ResultLine,
    StrategyCell,
    read_results,
    result_key,
)
from a2r_graph.eval.runner import run_eval, run_lines, without_policies
from a2r_graph.eval.strategy import evaluate_run
from a2r_graph.eval.verify import Verifier
from a2r_graph.graph import build_graph
from a2r_graph.serving.argtypes import positive_int
from a2r_graph.serving.interrupt import interruptible
from a2r_graph.serving.registry import DEFAULT, Strategy, strategy
from a2r_graph.threads import checkpointer_for


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser(
        "eval",
        parents=parents,
        help="Pass@1, Cons@N, Pass@N and A2R (with cost) over a benchmark",
        description="--n sets K, the explorer samples per problem; --ns the N values reported "
        "(each <= K; the synthesizer runs once per N over the first N samples).",
    )
    evaluate.add_argument(
        "source", help="a .jsonl/.csv/.parquet file, builtin:NAME (reasoning-gym) or hf:DATASET"
    )
    evaluate.add_argument(
        "--ns", type=positive_int, nargs="+", help="N values to report (default: K)"
    )
    evaluate.add_argument(
        "--graph",
        default=DEFAULT,
        help=f"the registered strategy to evaluate (default {DEFAULT}); another one runs once "
        "per problem and repetition, with its configuration from the environment: its "
        "Pass@1, cost, tokens per stage, wall time and its own metrics per query",
    )
    evaluate.add_argument("--runs", type=positive_int, default=1, help="repetitions per problem")
    evaluate.add_argument(
        "--size", type=positive_int, help="first SIZE problems (builtin: how many)"
    )
    evaluate.add_argument("--data-seed", type=int, default=0, help="builtin generator seed")
    evaluate.add_argument("--out", type=Path, default=Path("eval-out"), help="output directory")
    evaluate.add_argument(
        "--concurrency", type=positive_int, default=4, help="problems in flight at once"
    )
    evaluate.add_argument("--name", help="benchmark name in the table (default: the source)")
    evaluate.add_argument(
        "--alone",
        type=positive_int,
        default=None,
        metavar="K",
        help="also sample the synthesizer's model alone K times per problem (the explorer "
        "prompt, the synthesizer's endpoint, sampling and prices): its own Pass@1 and Cons@N, "
        "the baseline A2R must beat",
    )
    evaluate.add_argument(
        "--variants",
        nargs="+",
        choices=tuple(VARIANTS),
        default=[],
        help="also judge these synthesis options at the largest N, over the same paths "
        "(one more synthesis each): " + "; ".join(f"{k}: {v[0]}" for k, v in VARIANTS.items()),
    )
    evaluate.add_argument(
        "--paths-from",
        type=Path,
        metavar="DIR",
        help="no explorer call: synthesize over the explorer paths an earlier eval saved in "
        "DIR/results.jsonl (same source and --n), counting their tokens and cost as sampled; "
        "e.g. judge another synthesizer or --variants on samples already paid for. Problems "
        "DIR has not finished are left out",
    )
    evaluate.add_argument(
        "--keep-syntheses",
        action="store_true",
        help="with --paths-from and --variants: run only the variants, taking the rest of each "
        "line (A2R at each N, the policies, the synthesizer alone) from DIR; for the "
        "synthesizer DIR's run had (same model, sampling and prompts)",
    )
    evaluate.add_argument(
        "--objective",
        type=parse_objective,
        default="cheap",
        help="what the recommendation printed after the table optimizes: accurate, cheap "
        "(the cheapest within 1 point of the most accurate; default) or cap:COST (the most "
        "accurate at most COST per query)",
    )
    evaluate.add_argument(
        "--choose-on",
        type=Path,
        metavar="DIR",
        help="make the recommendation's choice on an earlier eval's results (DIR/results.json: "
        "the development split) and report it with this eval's figures (held-out data)",
    )
    evaluate.add_argument(
        "--report",
        action="store_true",
        help="only write the table, results.json and plot from OUT's results so far (no model "
        "call): e.g. while a long eval runs elsewhere; problems without a line count as not "
        "run yet",
    )
    for field in Fields.__dataclass_fields__:
        evaluate.add_argument(f"--{field}-field", default=getattr(Fields(), field))


def main(args: argparse.Namespace, context: A2RContext) -> int:
    """Run the eval, print and write the report; 1 if some problem failed (after reporting
    the finished ones), so that scripts notice, and a rerun retries the failed ones."""
    _check_installed()
    ns = sorted(set(args.ns or [context.n]))
    if ns[-1] > context.n or ns[0] < 1:
        raise ValueError(f"--ns must lie in [1, --n={context.n}]: got {ns}; raise --n")
    choose_on = read_recommendation(args.choose_on) if args.choose_on else None
    off = without_policies(context)
    if chosen := [name for name in off if getattr(context, name) != off[name]]:
        print(
            f"a2r eval: {', '.join(chosen)} not applied while sampling: every path is explored "
            "and synthesized, and each policy is judged by replaying the samples (the "
            "table's policy block; --confidence adds the confidence-based ones)",
            file=sys.stderr,
        )
    problems, expected = _problems(args)
    saved = None
    if args.paths_from is not None:
        saved = _saved_paths(args.paths_from, args.out, context.n, expected)
        expected = set(saved)
        if args.keep_syntheses:
            _check_kept(args, context, saved, ns)
    elif args.keep_syntheses:
        raise ValueError("--keep-syntheses keeps the syntheses of --paths-from DIR: name DIR")
    clock = WallClock(args.out)
    _run(args, clock, lambda: _evaluate(args, context, problems, ns, expected, saved, clock))
    rows, unfinished, pending = _outcome(args, expected)
    summary = summarize(rows, ns, failed=len(unfinished)) | clock.total | {"pending": len(pending)}
    benchmark = args.name or args.source
    model = f"{context.explorer.model} -> {context.synthesizer.model}"
    summary["recommendation"] = recommend(summary, context, args.objective, choose_on)
    table = markdown_table(summary, benchmark, model)

    def plot(path: Path) -> None:
        plot_accuracy_vs_cost(summary, path, f"{benchmark}: {model}")

    _write_report(args, table, {"benchmark": benchmark, "model": model, **summary}, plot)
    print("\n" + recommendation_text(summary["recommendation"]))
    return _exit_status(args, expected, unfinished)


def strategy_main(args: argparse.Namespace) -> int:
    """``a2r eval --graph NAME``: the same problems, one run of the strategy each; reported
    and exiting as ``main``."""
    _check_installed()
    chosen = strategy(args.graph)
    problems, expected = _problems(args)
    clock = WallClock(args.out)
    _run(args, clock, lambda: _evaluate_strategy(args, chosen, problems, expected, clock))
    rows, unfinished, pending = _outcome(args, expected)
    summary = summarize_strategy(rows, failed=len(unfinished))
    summary |= clock.total | {"pending": len(pending)}
    benchmark = args.name or args.source
    table = strategy_table(summary, benchmark, chosen.name)

    def plot(path: Path) -> None:
        plot_strategy(summary, path, f"{benchmark}: {chosen.name}", chosen.name)

    _write_report(args, table, {"benchmark": benchmark, "graph": chosen.name, **summary}, plot)
    return _exit_status(args, expected, unfinished)


def a2r_only(args: argparse.Namespace) -> list[str]:
    """The flags of this command that only the A2R eval takes, as given."""
    given = [
        args.ns,
        args.alone,
        args.variants,
        args.paths_from,
        args.keep_syntheses,
        args.choose_on,
    ]
    flags = ["--ns", "--alone", "--variants", "--paths-from", "--keep-syntheses", "--choose-on"]
    return [flag for flag, value in zip(flags, given, strict=True) if value]


def _check_installed() -> None:
    try:
        for module in ("math_verify", "matplotlib", "reasoning_gym", "tqdm"):
            importlib.import_module(module)
    except ImportError as error:
        raise ValueError(f"{error.name} is missing: pip install 'a2r-graph[eval]'") from error


def _problems(args: argparse.Namespace) -> tuple[list[Problem], set[str]]:
    """The problems, and the key of each (problem, repetition) to run; ``ValueError`` if OUT
    holds another graph's results (their keys would pass for this one's)."""
    fields = Fields(args.id_field, args.problem_field, args.answer_field)
    problems = load_problems(args.source, fields, size=args.size, seed=args.data_seed)
    results_path = args.out / RESULTS_FILE
    if others := sorted(
        {row.graph for row in read_results(results_path, failed=True)}
        - {getattr(args, "graph", DEFAULT)}
    ):
        raise ValueError(
            f"{results_path} holds results of the {', '.join(others)} graph, this eval "
            f"--graph {getattr(args, 'graph', DEFAULT)}: name another --out"
        )
    return problems, {result_key(p.id, r) for p in problems for r in range(args.runs)}


def _run(
    args: argparse.Namespace, clock: WallClock, evaluate: Callable[[], Awaitable[None]]
) -> None:
    """Run ``evaluate`` (not with ``--report``), timed by ``clock``."""
    if args.report:
        if not (args.out / RESULTS_FILE).is_file():
            raise ValueError(
                f"--report: {args.out / RESULTS_FILE} does not exist: point --out at the output "
                "directory of an a2r eval (its results so far are read, nothing is run)"
            )
        return
    clock.start()
    try:
        asyncio.run(interruptible(evaluate()))
    finally:
        clock.tick()


def _outcome(
    args: argparse.Namespace, expected: set[str]
) -> tuple[list[ResultLine], set[str], set[str]]:
    """The finished lines, the expected keys that failed, and (``--report``) those not run
    yet (a problem without a failed line has not run yet: not a failure)."""
    results_path = args.out / RESULTS_FILE
    rows = read_results(results_path)
    unfinished = expected - {row.key for row in rows}
    pending: set[str] = set()
    if args.report:
        tried = {row.key for row in read_results(results_path, failed=True)}
        pending, unfinished = unfinished - tried, unfinished & tried
    return rows, unfinished, pending


def _write_report(
    args: argparse.Namespace,
    table: str,
    summary: dict[str, Any],
    plot: Callable[[Path], None],
) -> None:
    """table.md, results.json and (with a finished problem) the plot, in OUT; the table printed
    (the recommendation, in results.json, is printed after it)."""
    (args.out / "table.md").write_text(table + "\n", encoding="utf-8")
    (args.out / SUMMARY_FILE).write_text(
        json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    written = "results.jsonl, results.json, table.md"
    if summary["queries"]:
        path = args.out / "accuracy_vs_cost.png"
        plot(path)
        written += f", {path.name}"
    print(table)
    print(f"\nwritten to {args.out}/: {written}")


def _exit_status(args: argparse.Namespace, expected: set[str], unfinished: set[str]) -> int:
    """1 (after saying which failed and how to retry) if some problem failed, else 0."""
    if not unfinished:
        return 0
    errors = {
        row.key: row.error.splitlines()[0]
        for row in read_results(args.out / RESULTS_FILE, failed=True)
        if row.key in unfinished and row.error is not None
    }  # each key's last error
    example = f" (e.g. {next(iter(errors.values()))})" if errors else ""
    print(
        f"a2r eval: {len(unfinished)} of {len(expected)} problem runs failed{example}; "
        "they are not counted as wrong answers (see 'error' in results.jsonl). "
        "Run the same command again to retry them; finished ones are kept.",
        file=sys.stderr,
    )
    return 1


def _saved_paths(paths_from: Path, out: Path, k: int, expected: set[str]) -> dict[str, ResultLine]:
    """``--paths-from``: the earlier eval's finished lines by key, checked against this one."""
    source = paths_from / RESULTS_FILE
    if paths_from.resolve() == out.resolve():
        raise ValueError("--paths-from must name another eval's directory than --out")
    if not source.is_file():
        raise ValueError(f"--paths-from: {source} does not exist: name an a2r eval's --out")
    saved = {row.key: row for row in read_results(source) if row.key in expected}
    if others := sorted({row.graph for row in saved.values()} - {DEFAULT}):
        raise ValueError(
            f"--paths-from: {source} holds runs of the {', '.join(others)} graph, not "
            f"{DEFAULT}'s explorer paths: name an eval of the {DEFAULT} graph"
        )
    if wrong := sorted({row.k for row in saved.values()} - {k}):
        raise ValueError(
            f"--paths-from: {source} sampled {', '.join(map(str, wrong))} paths per problem, "
            f"this eval --n {k}: use the same --n"
        )
    if missing := expected - saved.keys():
        print(
            f"a2r eval: {len(missing)} of {len(expected)} problem runs have no finished line "
            f"in {source}: left out (finish them there first)",
            file=sys.stderr,
        )
    return saved


def _check_kept(
    args: argparse.Namespace, context: A2RContext, saved: dict[str, ResultLine], ns: list[int]
) -> None:
    """``--keep-syntheses``: DIR's lines must hold what is kept, from the same synthesizer."""
    if not args.variants:
        raise ValueError("--keep-syntheses runs only the --variants: name at least one")
    if args.alone:
        raise ValueError("--keep-syntheses keeps DIR's synthesizer alone: drop --alone")
    report = args.paths_from / SUMMARY_FILE
    try:
        model = json.loads(report.read_text(encoding="utf-8"))["model"]
    except (OSError, ValueError, TypeError, KeyError):  # missing, torn or not a report
        model = ""
    synthesizer = model.rpartition(" -> ")[2] if isinstance(model, str) else ""
    if synthesizer != context.synthesizer.model:
        raise ValueError(
            f"--keep-syntheses: {report} names synthesizer {synthesizer or 'none'!r}, this eval "
            f"{context.synthesizer.model!r}: keep only the same synthesizer's syntheses (or run "
            f"a2r eval --report --out {args.paths_from} if {SUMMARY_FILE} is missing)"
        )
    wanted = {str(n) for n in ns}
    if lacking := sorted(key for key, row in saved.items() if not wanted <= row.by_n.keys()):
        raise ValueError(
            f"--keep-syntheses: {args.paths_from / RESULTS_FILE} has no synthesis at "
            f"N={', '.join(sorted(wanted))} for {', '.join(lacking)}: use --ns values DIR ran, "
            "or drop --keep-syntheses"
        )


class WallClock:
    """The eval's wall time summed over its invocations (``OUT/wall.json``), written at the
    start, at every finished problem and at the end: an invocation that is killed keeps the
    time up to its last finished problem."""

    def __init__(self, out: Path) -> None:
        self.path = out / "wall.json"
        self.total: dict[str, Any] = {}
        if self.path.is_file():
            self.total = json.loads(self.path.read_text(encoding="utf-8"))
        self.last = time.monotonic()

    def start(self) -> None:
        self.total["invocations"] = self.total.get("invocations", 0) + 1
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        self.total["wall_s"] = self.total.get("wall_s", 0.0) + now - self.last
        self.last = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")  # replaced whole: a kill never tears it
        partial.write_text(json.dumps(self.total) + "\n", encoding="utf-8")
        os.replace(partial, self.path)


@asynccontextmanager
async def _evaluating(
    args: argparse.Namespace,
    expected: set[str],
    clock: WallClock,
    label: str,
    judged: Callable[[ResultLine], tuple[bool, float]],
) -> AsyncIterator[tuple[BaseCheckpointSaver, Verifier, Callable[[ResultLine], None]]]:
    """The eval's checkpointer and verifier, and what to call with each line: it moves a
    progress bar over ``expected`` (the finished ones counted done) that shows the accuracy
    as ``label`` and the cost of what ran (``judged``: a finished line's correctness and
    cost), and how many failed; and it ticks ``clock``."""
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    seen = {"runs": 0, "correct": 0, "cost": 0.0, "failed": 0}
    with tqdm(total=len(expected), unit="problem", dynamic_ncols=True) as bar:
        bar.update(len(expected & {row.key for row in read_results(args.out / RESULTS_FILE)}))

        def progress(line: ResultLine) -> None:
            if not line.finished:  # not a wrong answer: counted apart, retried on rerun
                seen["failed"] += 1
            else:
                correct, cost = judged(line)
                seen["runs"] += 1
                seen["correct"] += correct
                seen["cost"] += cost
            postfix = {"cost": f"{seen['cost']:.4f}"}
            if seen["runs"]:
                postfix = {label: f"{100 * seen['correct'] / seen['runs']:.0f}%", **postfix}
            if seen["failed"]:
                postfix["failed"] = str(seen["failed"])
            bar.set_postfix(postfix)
            bar.update(1)
            clock.tick()

        async with checkpointer_for(args.db or args.out / "threads.sqlite") as checkpointer:
            with Verifier() as verifier:
                yield checkpointer, verifier, progress


async def _evaluate(
    args,
    context: A2RContext,
    problems,
    ns: list[int],
    expected: set[str],
    saved: dict[str, ResultLine] | None,
    clock: WallClock,
) -> None:
    top = str(ns[-1])

    def judged(line: ResultLine) -> tuple[bool, float]:
        cell = line.by_n[top]
        return cell.a2r_correct, cell.explore_usage.cost + cell.synthesize_usage.cost

    async with _evaluating(args, expected, clock, f"A2R@{top}", judged) as evaluating:
        checkpointer, verifier, progress = evaluating
        await run_eval(
            build_graph(checkpointer=checkpointer),
            problems,
            ns=ns,
            context=context,
            out_dir=args.out,
            runs=args.runs,
            alone=args.alone or 0,
            variants=args.variants,
            saved=saved,
            keep_syntheses=args.keep_syntheses,
            concurrency=args.concurrency,
            run_name=args.name or args.source,
            verifier=verifier,
            on_result=progress,
        )


async def _evaluate_strategy(
    args: argparse.Namespace,
    chosen: Strategy,
    problems: list[Problem],
    expected: set[str],
    clock: WallClock,
) -> None:
    def judged(line: ResultLine) -> tuple[bool, float]:
        cell = cast(StrategyCell, line.strategy)
        return cell.correct, cell.total.cost

    async with _evaluating(args, expected, clock, chosen.name, judged) as evaluating:
        checkpointer, verifier, progress = evaluating
        name = args.name or args.source
        run = partial(evaluate_run, chosen, chosen.graph(checkpointer), verifier, name)
        options = {"runs": args.runs, "concurrency": args.concurrency, "on_result": progress}
        await run_lines(problems, run, out_dir=args.out, **options)
