"""Spending only what a question needs: the decisions behind ``A2RContext``'s policies.

Pure functions of the explored paths and the run's context, shared by the graph (``nodes``)
and the eval's replay of saved samples (``a2r_graph.eval.policies``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from typing_extensions import TypedDict

from a2r_graph.answers import canonical_answer, last_boxed
from a2r_graph.context import (
    A2RContext,
    Agreement,
    Budget,
    ConfidenceConfig,
    ReferenceOptions,
    VoteFirst,
)
from a2r_graph.errors import NotEnoughPathsError

Path = TypeVar("Path", bound=Mapping[str, Any])
"""An explorer path (``state.ExplorerPath``), or the eval's saved copy of one."""


class Agreed(TypedDict):
    """The paths agree: on which answer, which paths, and their share of the usable ones."""

    boxed: str
    paths: list[int]
    share: float


def confidence_of(path: Mapping[str, Any], measure: str) -> float | None:
    confidence = path.get("confidence")
    return confidence.get(measure) if isinstance(confidence, dict) else None


def answer_groups(usable: Sequence[Path]) -> dict[str, list[Path]]:
    """The paths with a final answer, grouped by its canonical form, in order of first
    appearance."""
    groups: dict[str, list[Path]] = {}
    for path in usable:
        if (key := canonical_answer(path.get("boxed"))) is not None:
            groups.setdefault(key, []).append(path)
    return groups


def agreement(
    usable: Sequence[Path], rule: Agreement, confidence: ConfidenceConfig | None
) -> Agreed | None:
    """Whether the usable paths agree under ``rule`` (see ``context.Agreement``)."""
    if not (groups := answer_groups(usable)):
        return None
    group = max(groups.values(), key=len)  # ties: the group seen first (lowest index)
    share = len(group) / len(usable)
    if len(group) < rule.min_paths or share < rule.min_share:
        return None
    if rule.min_confidence is not None and confidence is not None:
        scores = [confidence_of(path, confidence.measure) for path in group]
        if any(score is None or score < rule.min_confidence for score in scores):
            return None
    return Agreed(boxed=group[0]["boxed"], paths=[p["index"] for p in group], share=share)


class Vote(TypedDict):
    """The usable paths' vote: the winning answer, its paths, and every answer's votes."""

    boxed: str
    paths: list[int]
    share: float
    """The winner's votes over all votes cast (paths, or their confidence weights)."""
    tied: bool
    """Another answer has as many votes (the winner is then the one seen first)."""
    tally: dict[str, float]
    """Votes per answer (its first path's boxed text), most first."""


def vote(usable: Sequence[Path], weight_by: str | None = None) -> Vote | None:
    """The majority over equivalent final answers (``answers.canonical_answer``) of the usable
    paths, one vote each, or each path's confidence ``weight_by`` (DeepConf's weighted vote;
    a path without it weighs 0). Paths without a final answer do not vote; None if none did."""
    if not (groups := answer_groups(usable)):
        return None

    def votes(group: list[Path]) -> float:
        if weight_by is None:
            return float(len(group))
        return sum(max(confidence_of(path, weight_by) or 0.0, 0.0) for path in group)

    ranked = sorted(groups.values(), key=votes, reverse=True)  # stable: ties keep first seen
    top, total = votes(ranked[0]), sum(votes(group) for group in ranked)
    return Vote(
        boxed=ranked[0][0]["boxed"],
        paths=[path["index"] for path in ranked[0]],
        share=top / total if total else 0.0,
        tied=len(ranked) > 1 and votes(ranked[1]) >= top,
        tally={group[0]["boxed"]: round(votes(group), 4) for group in ranked},
    )


def vote_decides(found: Vote | None, usable: int, rule: VoteFirst) -> bool:
    """``vote_first``: the vote answers when one answer leads alone with enough paths."""
    return (
        found is not None
        and not found["tied"]
        and len(found["paths"]) >= rule.min_paths
        and len(found["paths"]) / usable >= rule.min_share
    )


def most_confident(usable: Sequence[Path], k: int, measure: str) -> list[Path]:
    """The ``k`` most confident paths (a path without a measure ranks last), in index order."""
    ranked = sorted(usable, key=lambda p: -(confidence_of(p, measure) or float("-inf")))
    return sorted(ranked[:k], key=lambda p: p["index"])


def usable_paths(paths: Sequence[Path], min_paths: int) -> list[Path]:
    """The paths without an error, or ``NotEnoughPathsError`` when fewer than ``min_paths``."""
    usable = [path for path in paths if path["error"] is None]
    if len(usable) < min_paths:
        failures = {path["index"]: path["error"] for path in paths if path["error"] is not None}
        raise NotEnoughPathsError(len(usable), min_paths, failures)
    return usable


def spent(paths: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {
        "output_tokens": sum(p["usage"]["output_tokens"] for p in paths),
        "cost": sum(p["usage"]["cost"] for p in paths),
    }


def budget_reached(budget: Budget | None, paths: Sequence[Mapping[str, Any]]) -> bool:
    if budget is None:
        return False
    used = spent(paths)
    return (
        budget.max_output_tokens is not None and used["output_tokens"] >= budget.max_output_tokens
    ) or (budget.max_cost is not None and used["cost"] >= budget.max_cost)


def wave_size(context: A2RContext, explored: int) -> int:
    """How many paths the next wave explores after ``explored`` (all the rest without waves)."""
    target = next((wave for wave in context.waves if wave > explored), context.n)
    return max(target - explored, 0)


def _groups(paths: Sequence[Path]) -> list[list[Path]]:
    """Paths grouped by equivalent final answer, in order of first appearance; a path
    without a final answer is a group of its own."""
    groups: dict[Any, list[Path]] = {}
    for path in paths:
        key = canonical_answer(path.get("boxed"))
        groups.setdefault(key if key is not None else ("none", path["index"]), []).append(path)
    return list(groups.values())


def arrange(usable: Sequence[Path], options: ReferenceOptions) -> list[Path]:
    """The synthesizer's references: ``grouped`` puts paths with the same final answer
    together, the largest group first (ties: first seen); ``dedupe`` keeps one per answer."""
    groups = _groups(usable)
    if options.order == "grouped":
        groups.sort(key=len, reverse=True)  # stable: equal sizes keep their first-seen order
    if options.dedupe:
        groups = [group[:1] for group in groups]
    kept = [path for group in groups for path in group]
    return kept if options.order == "grouped" else sorted(kept, key=lambda p: p["index"])


def tally_note(answers: Sequence[str]) -> str:
    """How many references share each final answer, for the synthesizer."""
    paths = [{"index": i, "boxed": last_boxed(a)} for i, a in enumerate(answers)]
    counts = sorted(_groups(paths), key=len, reverse=True)
    parts = [
        f"{group[0]['boxed'] if group[0]['boxed'] is not None else 'no boxed answer'} "
        f"({len(group)} of {len(answers)})"
        for group in counts
    ]
    return "Final answers of the references: " + ", ".join(parts) + "."


def selected_index(boxed: str | None, reference_paths: Sequence[int]) -> int | None:
    """The path the selector named (``\\boxed{k}``: the k-th reference), or None."""
    text = (boxed or "").strip().lstrip("#").strip()
    if not text.isdigit() or not 1 <= int(text) <= len(reference_paths):
        return None
    return reference_paths[int(text) - 1]
