"""Curate explorer samples into synthesizer training data (the paper's section 3.3).

Input: ``results.jsonl`` files of ``a2r eval`` (per problem: the gold answer and every explorer
path's answer component and correctness). Per query, up to ``max_candidates`` usable answer
components are pooled (over repetitions). Each training example draws N of them at random, in
random order, and renders them with the graph's own synthesizer prompt
(``render_synthesizer_prompt``, one prompt file for serving and training), as the one user
message the graph sends. Queries can be limited to those where synthesis has room to improve:
some candidates right and some wrong.

Following AggLM (arXiv 2509.06870), each example is "easy" when majority voting over its
references' answers is right, "hard" when it is wrong though some reference is right (the
synthesizer must overrule the majority), and "none_right" when no reference is; ``mix_examples``
keeps hard and easy examples in a chosen share (``a2r curate --easy-fraction``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from a2r_graph.answers import last_boxed
from a2r_graph.eval.results import ResultLine
from a2r_graph.prompts import render_synthesizer_prompt

Difficulty = Literal["easy", "hard", "none_right"]


@dataclass
class Query:
    id: str
    problem: str
    gold: str
    candidates: list[tuple[str, bool]] = field(default_factory=list)
    """(answer component, correct) of each usable explorer path."""

    @property
    def correct(self) -> int:
        return sum(ok for _, ok in self.candidates)

    @property
    def learnable(self) -> bool:
        """Neither all right nor all wrong: the synthesizer's choice matters."""
        return 0 < self.correct < len(self.candidates)

    @property
    def difficulty(self) -> Difficulty:
        """AggLM's class of the whole pool of candidates."""
        return difficulty(self.candidates)


def majority_right(candidates: Sequence[tuple[str, bool]]) -> bool:
    """Whether majority voting over the candidates' final answers picks a right one: the right
    candidates (all equivalent to the gold answer) outnumber every set of equal wrong answers
    (the last ``\\boxed{}`` of each, whitespace aside; a wrong one without a box votes alone).
    A tie is not a right majority."""
    right = sum(ok for _, ok in candidates)
    wrong: Counter[str] = Counter()
    for index, (text, ok) in enumerate(candidates):
        if not ok:
            box = last_boxed(text)
            wrong["".join(box.split()) if box is not None else f"#{index}"] += 1
    return right > 0 and right > max(wrong.values(), default=0)


def difficulty(candidates: Sequence[tuple[str, bool]]) -> Difficulty:
    """AggLM's class: "easy" when the majority is right, "hard" when it is wrong though some
    candidate is right, "none_right" when no candidate is."""
    if not any(ok for _, ok in candidates):
        return "none_right"
    return "easy" if majority_right(candidates) else "hard"


def pool_queries(result_lines: Iterable[ResultLine], max_candidates: int = 16) -> list[Query]:
    """One ``Query`` per problem id, its usable paths pooled over repetitions (first ones kept)."""
    queries: dict[str, Query] = {}
    for line in result_lines:
        query = queries.setdefault(line.id, Query(line.id, line.problem, line.gold))
        for path in line.paths:
            usable = path.error is None and path.answer.strip()
            if usable and len(query.candidates) < max_candidates:
                query.candidates.append((path.answer, path.correct))
    return list(queries.values())


def training_examples(
    queries: Sequence[Query],
    *,
    n: int,
    per_query: int,
    seed: int = 0,
    learnable_only: bool = False,
    prompts_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """``per_query`` examples per query, each N candidates drawn without replacement and
    shuffled; queries with fewer than N candidates are skipped."""
    rng = random.Random(seed)
    examples = []
    for query in queries:
        if len(query.candidates) < n or (learnable_only and not query.learnable):
            continue
        for _ in range(per_query):
            drawn = rng.sample(query.candidates, n)  # a random subset in random order
            prompt = render_synthesizer_prompt(query.problem, [a for a, _ in drawn], prompts_dir)
            examples.append(
                {
                    "prompt": [{"role": "user", "content": prompt}],
                    "answer": query.gold,
                    "query_id": query.id,
                    "references_correct": [ok for _, ok in drawn],
                    "difficulty": difficulty(drawn),
                }
            )
    return examples


def mix_examples(
    examples: Sequence[dict[str, Any]], easy_fraction: float, *, seed: int = 0
) -> list[dict[str, Any]]:
    """AggLM's data mix: the largest random subset of the easy and hard examples in which easy
    ones make ``easy_fraction`` (0: hard only, 1: easy only), in their original order; examples
    with no right reference are left out."""
    if not 0 <= easy_fraction <= 1:
        raise ValueError(f"easy_fraction must be within [0, 1], got {easy_fraction}")
    easy = [i for i, e in enumerate(examples) if e["difficulty"] == "easy"]
    hard = [i for i, e in enumerate(examples) if e["difficulty"] == "hard"]
    if easy_fraction == 1:
        n_easy, n_hard = len(easy), 0
    elif easy_fraction == 0:
        n_easy, n_hard = 0, len(hard)
    else:
        total = min(len(hard) / (1 - easy_fraction), len(easy) / easy_fraction)
        n_easy = min(len(easy), round(total * easy_fraction))
        n_hard = min(len(hard), round(total * (1 - easy_fraction)))
    rng = random.Random(seed)
    kept = set(rng.sample(easy, n_easy)) | set(rng.sample(hard, n_hard))
    return [e for i, e in enumerate(examples) if i in kept]


def example_statistics(
    examples: Sequence[dict[str, Any]], kept: Sequence[dict[str, Any]], easy_fraction: float | None
) -> dict[str, Any]:
    """Easy/hard/none_right counts of the examples drawn and of those written."""

    def counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        found = Counter(row["difficulty"] for row in rows)
        return {name: found[name] for name in ("easy", "hard", "none_right")}

    return {
        "examples": counts(examples),
        "written": counts(kept),
        "easy_fraction": easy_fraction,
        "written_easy_share": (
            sum(row["difficulty"] == "easy" for row in kept) / len(kept) if kept else None
        ),
    }


def statistics(queries: Sequence[Query]) -> dict[str, Any]:
    """How the candidates are spread: what curation kept and what RL can learn from."""
    with_candidates = [q for q in queries if q.candidates]
    return {
        "queries": len(queries),
        "candidates": sum(len(q.candidates) for q in queries),
        "candidate_accuracy": (
            sum(q.correct for q in queries) / max(1, sum(len(q.candidates) for q in queries))
        ),
        "all_correct": sum(q.correct == len(q.candidates) for q in with_candidates),
        "all_wrong": sum(q.correct == 0 for q in with_candidates),
        "learnable": sum(q.learnable for q in queries),
        "easy": sum(q.difficulty == "easy" for q in with_candidates),
        "hard": sum(q.difficulty == "hard" for q in with_candidates),
    }
