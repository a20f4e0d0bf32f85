"""``a2r curate``: explorer samples (``a2r eval`` results) -> synthesizer training JSONL."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pydantic import ValidationError

from a2r_graph.errors import describe_validation_error


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    """``a2r train-synthesizer``'s arguments."""
    train.add_argument("--config", type=Path, required=True, help="YAML of TrainConfig fields")


def train_main(args: argparse.Namespace) -> int:
    """RL-tune the synthesizer (GRPO, DAPO loss, dynamic sampling) on `a2r curate` data"""
    try:
        from a2r_graph.train.grpo import TrainConfig, train
    except ImportError as error:
        raise ValueError(f"{error.name} is missing: pip install 'a2r-graph[train]'") from error
    if not args.config.is_file():
        raise ValueError(f"no such config file: {args.config}")
    try:
        config = TrainConfig.from_yaml(args.config)
    except ValidationError as error:
        raise ValueError(describe_validation_error(error, env_prefix=None)) from error
    checkpoint = train(config)
    if os.environ.get("RANK", "0") == "0":  # once under accelerate launch / torchrun
        print(f"checkpoint: {checkpoint} (metrics: {checkpoint / 'metrics.jsonl'})")
    return 0


def add_curate_arguments(curate: argparse.ArgumentParser) -> None:
    """``a2r curate``'s arguments."""
    curate.add_argument("results", type=Path, nargs="+", help="results.jsonl files of a2r eval")
    curate.add_argument("--n", type=int, default=4, help="references per example (N)")
    curate.add_argument("--per-query", type=int, default=4, help="examples drawn per query")
    curate.add_argument("--max-candidates", type=int, default=16, help="candidates per query")
    curate.add_argument("--seed", type=int, default=0)
    curate.add_argument(
        "--learnable-only",
        action="store_true",
        help="keep queries whose candidates are neither all right nor all wrong",
    )
    curate.add_argument(
        "--easy-fraction",
        type=float,
        help="AggLM mix (arXiv 2509.06870): keep hard examples (majority of the references "
        "wrong, some right) and easy ones (majority right) with easy ones this share (0-1) of "
        "those written; examples with no right reference are left out. Default: keep all",
    )
    curate.add_argument("--prompts-dir", type=Path, help="the prompts the graph serves with")
    curate.add_argument("--out", type=Path, required=True, help="training JSONL to write")


def curate_main(args: argparse.Namespace) -> int:
    """build synthesizer training data from `a2r eval` results

    Per query, N of its explorer answer components (random subset, random order) in the
    graph's synthesizer prompt, with the gold answer.
    """
    from a2r_graph.eval.results import read_results
    from a2r_graph.train.curate import (
        example_statistics,
        mix_examples,
        pool_queries,
        statistics,
        training_examples,
    )

    if args.easy_fraction is not None and not 0 <= args.easy_fraction <= 1:
        raise ValueError(f"--easy-fraction must be within [0, 1], got {args.easy_fraction}")
    missing = [str(path) for path in args.results if not path.is_file()]
    if missing:
        raise ValueError(f"no such results file: {', '.join(missing)} (run `a2r eval` first)")
    queries = pool_queries(
        (line for path in args.results for line in read_results(path)), args.max_candidates
    )
    examples = training_examples(
        queries,
        n=args.n,
        per_query=args.per_query,
        seed=args.seed,
        learnable_only=args.learnable_only,
        prompts_dir=args.prompts_dir,
    )
    written = (
        examples
        if args.easy_fraction is None
        else mix_examples(examples, args.easy_fraction, seed=args.seed)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for example in written:
            out.write(json.dumps(example, ensure_ascii=False) + "\n")
    stats = statistics(queries) | example_statistics(examples, written, args.easy_fraction)
    (args.out.with_suffix(".stats.json")).write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    print(f"{len(written)} examples written to {args.out}")
    return 0
