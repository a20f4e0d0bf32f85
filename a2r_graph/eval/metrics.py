"""The paper's metrics over one problem's samples, and their mean over a benchmark.

- **Pass@1**: the share of explorer samples that are correct (averaged over all K samples);
- **Cons@N**: the majority answer of the first N samples is correct. Answers are grouped by
  math equivalence (``\\frac12``, ``0.5`` and ``1/2`` are one vote): a sample joins the first
  group whose first answer it is equivalent to. Samples without a ``\\boxed{}`` do not vote.
  Ties go to the group whose first member came first (the lowest path index): deterministic,
  and independent of how the answers are written;
- **Pass@N**: any of the first N samples is correct;
- **A2R**: the synthesizer's answer over the first N samples is correct.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from statistics import mean
from typing import NamedTuple

Equivalent = Callable[[str, str], Awaitable[bool]]


class Metric(NamedTuple):
    """A per-N accuracy of the report (Pass@1, over all samples, is apart)."""

    key: str
    """Its accuracy's key in ``results.json`` (``by_n``)."""
    label: str
    """Its column in the table and its line on the plot."""
    cell: str
    """The problem's true/false in ``results.jsonl`` (``by_n``), which the runner writes."""
    cost: str | None = None
    """Its cost's prefix in ``results.json`` (``{cost}_cost_per_query``), for the plot;
    None: not a method one runs (an oracle), no line on the plot."""
    marker: str = "o"


METRICS = (
    Metric("cons_at_n", "Cons@N", "cons_correct", cost="cons", marker="s"),
    Metric("pass_at_n", "Pass@N", "pass_at_n"),
    Metric("a2r", "A2R", "a2r_correct", cost="a2r"),
)
"""The table's columns after Pass@1, in order."""


async def majority_vote(
    answers: Sequence[str | None],
    equivalent: Equivalent,
    weights: Sequence[float] | None = None,
) -> str | None:
    """The majority answer by equivalence groups (ties: the earliest group); None if no votes.
    With ``weights`` (DeepConf's confidence-weighted voting) a group's votes are its weights."""
    groups: list[tuple[str, list[float]]] = []
    for answer, weight in zip(answers, weights or [1.0] * len(answers), strict=True):
        if answer is None or not answer.strip():
            continue
        for first, votes in groups:
            if await equivalent(first, answer):
                votes.append(weight)
                break
        else:
            groups.append((answer, [weight]))
    if not groups:
        return None
    # max keeps the first of equal totals: the earliest group
    return max(groups, key=lambda group: sum(group[1]))[0]


def pass_at_1(correct: Sequence[bool]) -> float:
    return mean(correct) if correct else 0.0


def pass_at_n(correct: Sequence[bool], n: int) -> bool:
    return any(correct[:n])


def mean_of(values: Sequence[float]) -> float:
    return mean(values) if values else 0.0
