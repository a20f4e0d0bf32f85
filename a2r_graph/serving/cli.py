"""``a2r``: run A2R from the command line (a thin layer over ``a2r_graph.graph``)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from a2r_graph import telemetry, threads
from a2r_graph.context import A2RContext, redact_url
from a2r_graph.errors import (
    A2RError,
    InvalidQuestionError,
    UnknownThreadError,
    describe_validation_error,
)
from a2r_graph.eval import command as eval_command
from a2r_graph.eval import compare as compare_command
from a2r_graph.graph import build_graph
from a2r_graph.r2r import command as router_command
from a2r_graph.serving import phoenix as phoenix_command
from a2r_graph.serving import serve as serve_command
from a2r_graph.serving.argtypes import positive_float, subcommand
from a2r_graph.serving.flags import add_flags, context_values
from a2r_graph.serving.interrupt import Interrupted, interruptible
from a2r_graph.serving.registry import DEFAULT, strategy
from a2r_graph.serving.render import report
from a2r_graph.state import A2ROutput, validated_question
from a2r_graph.threads import (
    CheckpointDatabaseError,
    checkpointer_for,
    default_db_path,
    is_postgres,
)
from a2r_graph.train import command as train_command


def _database(text: str) -> Path | str:
    """``--db``: a PostgreSQL DSN as written, else a SQLite path."""
    return text if is_postgres(text) else Path(text)


def _context_options() -> argparse.ArgumentParser:
    """The run options ``ask`` and ``resume`` share."""
    options = argparse.ArgumentParser(add_help=False)
    add_flags(options)  # one per A2RContext field it sets: help, choices, checks from the field
    options.add_argument(
        "--db",
        type=_database,
        default=None,
        help="SQLite file or postgresql:// DSN of saved runs (A2R_CHECKPOINT_DB, default "
        f"{redact_url(str(default_db_path()))}; ':memory:' keeps nothing)",
    )
    return options


def _run_options() -> argparse.ArgumentParser:
    """What only ``ask`` and ``resume`` take: one run's time limit and how it is printed."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--run-timeout", type=positive_float, help="seconds for the whole run (default: no limit)"
    )
    options.add_argument("--json", action="store_true", help="print the whole result as JSON")
    options.add_argument("--show-traces", action="store_true", help="print explorer traces")
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2r",
        description="A2R: N explorer paths in parallel, then one synthesizer over their answers. "
        "Unset options come from A2R_* environment variables (see README). Every run is saved "
        "on a thread: a failed one resumes without paying again for what finished.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    options = _context_options()
    one_run = [options, _run_options()]
    ask = commands.add_parser("ask", parents=one_run, help="answer one question")
    ask.add_argument("question")
    ask.add_argument(
        "--graph",
        default=DEFAULT,
        help=f"the strategy to run (default {DEFAULT}); the run options above are {DEFAULT}'s, "
        "another strategy takes its configuration from the environment",
    )
    ask.add_argument(
        "--thread",
        help="thread id to save the run under (default: a new one); asking a thread's "
        "unfinished question again resumes it",
    )
    resume = commands.add_parser(
        "resume", parents=one_run, help="finish a saved run that failed or was stopped"
    )
    resume.add_argument("thread", help="the thread id the failed run printed")
    eval_command.add_parser(commands, [options])
    for name, main, add_arguments in (
        ("curate", train_command.curate_main, train_command.add_curate_arguments),
        ("train-synthesizer", train_command.train_main, train_command.add_train_arguments),
        ("compare", compare_command.main, compare_command.add_arguments),
        ("train-router", router_command.main, router_command.add_arguments),
        ("serve", serve_command.main, serve_command.add_arguments),
        ("phoenix-prices", phoenix_command.main, phoenix_command.add_arguments),
    ):
        add_arguments(subcommand(commands, name, main))
    handlers = {
        "ask": _ask,
        "resume": _ask,
        "eval": _eval,
        "compare": _offline(compare_command.main),
        "curate": _offline(train_command.curate_main),
        "train-synthesizer": _offline(train_command.train_main),
        "train-router": _offline(router_command.main),
        "serve": serve_command.main,
        "phoenix-prices": phoenix_command.main,
    }
    for name, handler in handlers.items():
        commands.choices[name].set_defaults(func=handler)
    return parser


def resume_command(args: argparse.Namespace, thread_id: str) -> str:
    """The ``a2r resume`` command line that finishes this run with the same options."""
    command, redacted = ["a2r", "resume", thread_id], False
    for action in [*_context_options()._actions, *_run_options()._actions]:
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None:
            continue
        if action.nargs == 0:
            command += [action.option_strings[0]] if value is True and action.const is True else []
        elif isinstance(value, list):
            command += [action.option_strings[0], *map(str, value)]
        else:
            secret = action.dest.endswith("_url") or action.dest == "db"
            shown = redact_url(str(value)) if secret else str(value)
            redacted |= shown != str(value)
            command += [action.option_strings[0], shown]
    note = "  (a URL's user:password is not printed: put it back)" if redacted else ""
    return shlex.join(command) + note


def context_from_args(args: argparse.Namespace) -> A2RContext:
    """Command-line values over A2R_* environment variables over defaults."""
    return A2RContext(**context_values(args))


async def run(args: argparse.Namespace, context: A2RContext, thread_id: str) -> A2ROutput:
    """The ``ask`` or ``resume`` run, saved on the thread; ``Interrupted`` on Ctrl-C."""

    async def saved_run() -> A2ROutput:
        async with checkpointer_for(args.db or default_db_path()) as checkpointer:
            durable = build_graph(checkpointer=checkpointer)
            async with asyncio.timeout(args.run_timeout):
                if args.command == "resume":
                    return await threads.resume(durable, thread_id, context)
                return await threads.ask(durable, args.question, thread_id, context)

    return await interruptible(saved_run())


def _saved_run_note(args: argparse.Namespace, thread_id: str) -> str:
    """How to finish the run, when the run database holds it unfinished; else nothing
    (``--db :memory:``, a question rejected before anything was written, a bad database)."""
    db = args.db or default_db_path()
    if str(db) == ":memory:" or not (is_postgres(db) or Path(db).is_file()):
        return ""

    async def resumable() -> bool:
        async with checkpointer_for(db) as checkpointer:
            graph = build_graph(checkpointer=checkpointer)
            return await threads.holds_unfinished_run(graph, thread_id)

    try:
        if not asyncio.run(resumable()):
            return ""
    except (Exception, KeyboardInterrupt):  # nothing readable there: no promise to make
        return ""
    return (
        f"\nThe run is saved as thread {thread_id}; what finished is kept. Fix the cause, "
        f"then finish it with:\n  {resume_command(args, thread_id)}"
    )


def _db_problem(args: argparse.Namespace, error: CheckpointDatabaseError) -> str:
    if args.db:
        source = "--db"
    else:
        source = "A2R_CHECKPOINT_DB" if os.environ.get("A2R_CHECKPOINT_DB") else "the default --db"
    return (
        f"a2r: cannot use {source} {error.path}: {error.reason}; pass another path with "
        "--db PATH (or a postgresql:// DSN), or --db :memory: to keep nothing"
    )


def _offline(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``curate``, ``train-synthesizer``, ``compare``: a bad argument is exit status 2, with
    the reason."""

    def handle(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ValueError as error:
            return _fail(f"a2r {args.command}: {error}", 2)

    return handle


def _eval(args: argparse.Namespace) -> int:
    """``eval``: A2R over a benchmark, or (``--graph NAME``) another strategy."""
    evaluate = eval_command.strategy_main
    if args.graph != DEFAULT:
        if refused := _refused(args, eval_command.a2r_only(args)):
            return _fail(f"a2r eval: {refused}", 2)
    else:
        try:
            evaluate = functools.partial(eval_command.main, context=context_from_args(args))
        except ValidationError as error:
            return _fail(describe_validation_error(error), 2)
    try:
        return evaluate(args)
    except ValueError as error:  # bad data source, fields, --ns or --graph
        return _fail(f"a2r eval: {error}", 2)
    except (Interrupted, KeyboardInterrupt):
        return _fail(
            "a2r eval: interrupted; finished problems are in results.jsonl: run the same "
            "command again to go on",
            130,
        )


def _refused(args: argparse.Namespace, more: list[str] | None = None) -> str:
    """Why the A2R options given (the run options, and ``more``) do not apply to the
    ``--graph`` chosen, or "" if none was given."""
    flags = [
        action.option_strings[0]
        for action in _context_options()._actions
        if action.option_strings and action.dest != "db" and getattr(args, action.dest) is not None
    ] + (more or [])
    if not flags:
        return ""
    return (
        f"{', '.join(flags)}: options of the {DEFAULT} graph; the {args.graph} graph takes its "
        "configuration from its environment"
    )


def _ask_strategy(args: argparse.Namespace) -> int:
    """``ask --graph NAME``: one run of another strategy, saved on a thread, printed."""
    if refused := _refused(args):
        return _fail(f"a2r: {refused}", 2)
    try:
        chosen = strategy(args.graph)
        question = validated_question(args.question)
    except A2RError as error:
        return _fail(f"a2r: {error}", 2)
    thread_id = args.thread or str(uuid.uuid4())

    async def saved_run() -> dict[str, Any]:
        async with checkpointer_for(args.db or default_db_path()) as checkpointer:
            graph = chosen.graph(checkpointer)
            async with asyncio.timeout(args.run_timeout):
                return await threads.run(graph, {"question": question}, thread_id, None)

    started = time.perf_counter()
    try:
        result = asyncio.run(interruptible(saved_run()))
    except TimeoutError:
        return _fail(f"a2r: the run took longer than --run-timeout {args.run_timeout} s", 1)
    except A2RError as error:
        return _fail(f"a2r: {error}", 1)
    except (Interrupted, KeyboardInterrupt):
        return _fail("a2r: interrupted", 130)
    wall_s = time.perf_counter() - started
    if args.json:
        output = {**result, "thread_id": thread_id, "wall_s": round(wall_s, 3)}
        print(json.dumps(output, indent=2, ensure_ascii=False))
    else:
        print(report(result, wall_s))
        print(f"thread: {thread_id}")
    return 0


def _fail(message: str, exit_code: int) -> int:
    print(message, file=sys.stderr)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="a2r: %(message)s")  # retries, on stderr
    telemetry.configure_from_env()
    return args.func(args)


def _ask(args: argparse.Namespace) -> int:
    """``ask`` and ``resume``: one run, printed; a failure names what to fix and how to resume."""
    if getattr(args, "graph", DEFAULT) != DEFAULT:
        return _ask_strategy(args)
    try:
        context = context_from_args(args)
    except ValidationError as error:
        return _fail(describe_validation_error(error), 2)
    thread_id = args.thread or str(uuid.uuid4())
    started = time.perf_counter()
    try:
        result = asyncio.run(run(args, context, thread_id))
    except ValidationError as error:
        return _fail(describe_validation_error(error, env_prefix=None), 2)
    except CheckpointDatabaseError as error:  # before any model call
        return _fail(_db_problem(args, error), 2)
    except InvalidQuestionError as error:  # before anything was written
        return _fail(f"a2r: {error}", 2)
    except UnknownThreadError as error:
        return _fail(f"a2r: {error} (in {args.db or default_db_path()})", 2)
    except TimeoutError:
        return _fail(
            f"a2r: the run took longer than --run-timeout {args.run_timeout} s"
            + _saved_run_note(args, thread_id),
            1,
        )
    except A2RError as error:
        return _fail(f"a2r: {error}" + _saved_run_note(args, thread_id), 1)
    except (Interrupted, KeyboardInterrupt):  # KeyboardInterrupt: before run() took SIGINT
        return _fail("a2r: interrupted" + _saved_run_note(args, thread_id), 130)
    wall_s = time.perf_counter() - started
    if args.json:
        output = {**result, "thread_id": thread_id, "wall_s": round(wall_s, 3)}
        print(json.dumps(output, indent=2, ensure_ascii=False))
    else:
        print(report(result, wall_s, args.show_traces))
        print(f"thread: {thread_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
