"""``a2r train-router``: label the SLM's greedy answers with the LLM (``labels.py``), train the
``linear`` router (``train_router.py``), write its file and print each router's held-out
precision/recall. Endpoints and routing settings (top_k, retries) come from the environment
as for an R2R run: ``A2R_EXPLORER__*`` is the SLM, ``A2R_SYNTHESIZER__*`` the LLM."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from a2r_graph.errors import describe_validation_error
from a2r_graph.eval.data import Fields, load_problems
from a2r_graph.r2r.client import ServerFactory, token_server
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.labels import (
    LabelCounts,
    LabelSettings,
    QuestionLabels,
    greedy,
    label_question,
)
from a2r_graph.r2r.prepare import check_shared_tokenizer
from a2r_graph.r2r.routers import TokenChoice

DEFAULT_SOURCE = "builtin:gsm_symbolic,number_sequence"


def add_arguments(train: argparse.ArgumentParser) -> None:
    """``a2r train-router``'s arguments."""
    train.add_argument(
        "source",
        nargs="?",
        default=DEFAULT_SOURCE,
        help="questions as for `a2r eval`: a .jsonl/.csv/.parquet file, builtin:NAME or "
        f"hf:DATASET (default {DEFAULT_SOURCE})",
    )
    train.add_argument("--size", type=int, default=20, help="questions (builtin: per generator)")
    train.add_argument(
        "--data-seed", type=int, default=1, help="builtin generator seed (1: development)"
    )
    train.add_argument("--out", type=Path, required=True, help="the router JSON file to write")
    train.add_argument("--labels", type=Path, help="also write the labels here (JSONL)")
    train.add_argument(
        "--from-labels",
        type=Path,
        metavar="FILE",
        help="no model call: train on the labels an earlier run wrote (--labels), e.g. under "
        "another --unjudged rule or --recall",
    )
    train.add_argument("--recall", type=float, default=0.95, help="recall chosen on dev")
    train.add_argument(
        "--judge-per-question",
        type=int,
        default=2,
        help="candidates judged per question (one SLM continuation each)",
    )
    train.add_argument(
        "--unjudged",
        choices=("drop", "divergent"),
        default="drop",
        help="unjudged candidates: left out (drop) or counted divergent",
    )
    train.add_argument("--max-tokens", type=int, default=256, help="SLM tokens per answer")
    train.add_argument("--seed", type=int, default=0, help="judging sample and split seed")
    for field in Fields.__dataclass_fields__:
        train.add_argument(f"--{field}-field", default=getattr(Fields(), field))


def main(args: argparse.Namespace, servers: ServerFactory = token_server) -> int:
    """label the SLM's answers with the LLM and train R2R's linear router

    Per question: the SLM's greedy answer with its top-k logprobs; the LLM's top-1 at each
    position (candidates: where it differs); a sample of candidates judged by continuing the
    SLM from the LLM's token (divergent: the final answer changes). Trains a class-weighted
    logistic router, threshold set on a dev part for --recall; prints precision/recall of it
    and the entropy and top1 routers on held-out labels. Endpoints: A2R_EXPLORER__* (SLM),
    A2R_SYNTHESIZER__* (LLM); A2R_R2R__TOP_K.
    """
    from a2r_graph.r2r.train_router import TrainingError, table, train_router, write_router

    if args.size < 1 or args.max_tokens < 1 or args.judge_per_question < 0:
        raise ValueError("--size and --max-tokens must be positive, --judge-per-question >= 0")
    if not 0 < args.recall <= 1:
        raise ValueError(f"--recall must be in (0, 1], not {args.recall}")
    try:
        context = greedy(R2RContext())
    except ValidationError as error:
        raise ValueError(describe_validation_error(error)) from error
    started = time.perf_counter()
    if args.from_labels:
        labelled = read_labels(args.from_labels)
    else:
        fields = Fields(args.id_field, args.problem_field, args.answer_field)
        problems = load_problems(args.source, fields, size=args.size, seed=args.data_seed)
        settings = LabelSettings(args.max_tokens, args.judge_per_question, args.unjudged, args.seed)
        labelled = asyncio.run(
            label_all([(p.id, p.problem) for p in problems], context, settings, servers)
        )
    seconds = time.perf_counter() - started
    counts = LabelCounts()
    for labels in labelled:
        counts.add(labels)
    done = (
        f"read the labels of {len(labelled)} questions"
        if args.from_labels
        else (f"labelled {len(labelled)} questions in {seconds:.0f} s")
    )
    print(
        f"{done}: {counts.positions} positions, "
        + ", ".join(f"{k} {v}" for k, v in counts.by_kind.items())
    )
    if args.labels:
        write_labels(labelled, args.labels)
    if not any(labels.candidates for labels in labelled):
        raise ValueError(
            "the LLM agreed with every SLM token: no candidate to label (two different "
            "models? more questions or longer answers?)"
        )
    examples = [labels.examples(args.unjudged) for labels in labelled]
    try:
        trained = train_router(examples, context.r2r.top_k, args.recall, args.seed)
    except TrainingError as error:
        raise ValueError(str(error)) from error
    write_router(
        trained,
        args.out,
        args.recall,
        labels={
            "source": args.source,
            "questions": len(labelled),
            "data_seed": args.data_seed,
            "judge_per_question": args.judge_per_question,
            "unjudged": args.unjudged,
            "max_tokens": args.max_tokens,
            **counts.by_kind,
        },
        models={"slm": context.explorer.model, "llm": context.synthesizer.model},
    )
    print(table(trained, args.recall))
    print(f"router file: {args.out} (A2R_R2R__ROUTER=linear A2R_R2R__ROUTER_FILE={args.out})")
    return 0


async def label_all(
    questions: list[tuple[str, str]],
    context: R2RContext,
    settings: LabelSettings,
    servers: ServerFactory = token_server,
) -> list[QuestionLabels]:
    """Each question's labels, one question at a time (the CPU runs one model call well)."""
    timeout = context.request_timeout_s
    async with (
        servers(context.explorer, timeout, None) as slm,
        servers(context.synthesizer, timeout, None) as llm,
    ):
        await check_shared_tokenizer(slm, llm, context)
        out = []
        for n, (question_id, question) in enumerate(questions, 1):
            labels = await label_question(question_id, question, slm, llm, context, settings, _log)
            _log(
                f"[{n}/{len(questions)}] {question_id}: {len(labels.kinds)} tokens, "
                f"{len(labels.candidates)} candidates"
            )
            out.append(labels)
    return out


def write_labels(labelled: list[QuestionLabels], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for labels in labelled:
            row = {
                "id": labels.question_id,
                "answer": labels.answer,
                "tokens": [[t.id, t.logprob, [list(c) for c in t.top]] for t in labels.tokens],
                "llm_top1": labels.llm_top1,
                "kinds": labels.kinds,
            }
            out.write(json.dumps(row) + "\n")


def read_labels(path: Path) -> list[QuestionLabels]:
    """The labels ``write_labels`` wrote."""
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [
            QuestionLabels(
                row["id"],
                [
                    TokenChoice(token, logprob, tuple((i, lp) for i, lp in top), position)
                    for position, (token, logprob, top) in enumerate(row["tokens"])
                ],
                row["llm_top1"],
                row["kinds"],
                row["answer"],
            )
            for row in rows
            if row
        ]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"cannot read labels from {path}: {type(error).__name__}: {error}"
        ) from error


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
