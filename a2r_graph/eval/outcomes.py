"""Why the synthesizer wins or loses: what it did with its references, at the largest N.

Each finished problem's synthesis is one of ``OUTCOMES`` (its final answer compared with the
references' by ``answers.canonical_answer``, the graph's own test of equal answers), and is
right or wrong; against the vote of the same paths (Cons@N) it ``rescued`` a problem the vote
got wrong, or ``lost`` one the vote got right. From ``results.jsonl`` alone: no model call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from a2r_graph.answers import canonical_answer
from a2r_graph.eval.results import ResultLine, SavedPath, Synthesis

OUTCOMES = {
    "majority": "took the most common reference answer (or one of those tied)",
    "minority": "took a less common reference answer",
    "new": "wrote an answer no reference has",
    "cut": "ran out of tokens before a boxed answer",
    "none": "ended without a boxed answer",
}
"""What the synthesizer did with its references: key -> label in the table."""


def outcome(cell: Synthesis, paths: Sequence[SavedPath]) -> str:
    """The ``OUTCOMES`` key of one synthesis (``by_n`` cell) over ``paths`` (its references)."""
    answer = canonical_answer(cell.a2r_boxed)
    if answer is None:
        return "cut" if cell.a2r_finish_reason == "length" else "none"
    counts: dict[str, int] = {}
    for path in paths:
        if (key := canonical_answer(path.boxed)) is not None:
            counts[key] = counts.get(key, 0) + 1
    if answer not in counts:
        return "new"
    return "majority" if counts[answer] == max(counts.values()) else "minority"


def synthesis_outcomes(rows: Sequence[ResultLine], n: int) -> dict[str, Any]:
    """Per outcome, how many syntheses at ``n`` and how many of them were right; and how many
    problems the synthesis rescued from, or lost to, the vote of the same paths."""
    table = {key: {"count": 0, "right": 0} for key in OUTCOMES}
    rescued = lost = 0
    for row in rows:
        cell = row.by_n.get(str(n))
        if cell is None:
            continue
        entry = table[outcome(cell, row.paths[:n])]
        entry["count"] += 1
        entry["right"] += cell.a2r_correct
        rescued += cell.a2r_correct and not cell.cons_correct
        lost += cell.cons_correct and not cell.a2r_correct
    return {"n": n, "outcomes": table, "rescued": rescued, "lost": lost}


def outcomes_table(found: dict[str, Any]) -> str:
    """``synthesis_outcomes`` as a markdown block."""
    total = sum(entry["count"] for entry in found["outcomes"].values())
    if not total:
        return ""
    lines = [
        f"| The synthesizer at N={found['n']} | problems | right |",
        "|---|--:|--:|",
    ]
    for key, label in OUTCOMES.items():
        entry = found["outcomes"][key]
        lines.append(f"| {label} | {entry['count']} | {entry['right']} |")
    lines.append(
        f"\nAgainst the vote of the same paths: {found['rescued']} rescued (right where Cons@N "
        f"was wrong), {found['lost']} lost (wrong where Cons@N was right), of {total}."
    )
    return "\n".join(lines)
