"""Curate explorer samples into synthesizer training data (the paper's section 3.3).

Input: ``results.jsonl`` files of ``a2r eval`` (per problem: the gold answer and every explorer
path's answer component and correctness). Per query, up to ``max_candidates`` usable answer
components are pooled (over repetitions). Each training example draws N of them at random, in
random order, and renders them with the graph's own synthesizer prompt
(``render_synthesizer_prompt``, one prompt file for serving and training), as the one user
message the graph sends. Queries can be limited to those where synthesis has room to improve:
some candidates right and some wrong.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a2r_graph.prompts import render_synthesizer_prompt


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


def pool_queries(result_lines: Iterable[dict[str, Any]], max_candidates: int = 16) -> list[Query]:
    """One ``Query`` per problem id, its usable paths pooled over repetitions (first ones kept)."""
    queries: dict[str, Query] = {}
    for line in result_lines:
        query = queries.setdefault(
            str(line["id"]), Query(str(line["id"]), line["problem"], line["gold"])
        )
        for path in line.get("paths", []):
            usable = path["error"] is None and path["answer"].strip()
            if usable and len(query.candidates) < max_candidates:
                query.candidates.append((path["answer"], bool(path["correct"])))
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
                }
            )
    return examples


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
    }
