"""The synthesis modes replayed on saved evals (no model call): each problem's saved paths
voted by the graph's own functions (``a2r_graph.policies.vote``, ``vote_decides``), the saved
synthesis where a mode calls the synthesizer. Prints the table in README.md here.

    python docs/results/vote-modes/replay.py > docs/results/vote-modes/table.md
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from a2r_graph.context import VoteFirst
from a2r_graph.policies import vote, vote_decides

RESULTS = Path(__file__).parents[1]
Line = dict[str, Any]


def lines(name: str) -> list[Line]:
    with gzip.open(RESULTS / name / "results.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def cost(usages: list[dict]) -> float:
    return sum(u["cost"] for u in usages)


def plain(line: Line) -> tuple[list[dict], bool, float]:
    """The explorers' paths, and the saved A2R synthesis at N: right?, its cost."""
    cell = line["by_n"][str(line["k"])]
    return line["paths"], cell["a2r_correct"], cell["synthesize_usage"]["cost"]


def alone(line: Line) -> tuple[list[dict], bool, float]:
    """The synthesizer's model in both stages: its --alone samples and their synthesis."""
    cell = line["policies"]["alone_a2r"]
    return (
        line["alone"],
        cell["correct"],
        cell["usage"]["cost"] - cost([p["usage"] for p in line["alone"]]),
    )


def modes(paths: list[dict], synthesized: bool, synthesis_cost: float) -> dict[str, tuple]:
    """mode -> (right?, cost, synthesizer called?) on one problem."""
    usable = [p for p in paths if p.get("error") is None]
    explored = cost([p["usage"] for p in paths])

    def by_vote(found: dict | None) -> bool:
        if found is None:
            return False
        return next(p for p in usable if p["index"] == found["paths"][0])["correct"]

    found = vote(usable)
    out = {
        "synthesize": (synthesized, explored + synthesis_cost, True),
        "vote": (by_vote(found), explored, False),
    }
    if all(p.get("confidence") for p in usable):
        out["weighted_vote"] = (by_vote(vote(usable, "mean")), explored, False)
    if vote_decides(found, len(usable), VoteFirst()):
        out["vote_first"] = (by_vote(found), explored, False)
    else:
        out["vote_first"] = (synthesized, explored + synthesis_cost, True)
    return out


CONFIGS: list[tuple[str, str, Callable[[Line], tuple]]] = [
    ("0.5B explorers, 0.5B synthesizer (gsm_symbolic)", "policies-heldout", plain),
    ("0.5B explorers, 1.5B synthesizer", "small-to-big", plain),
    ("1.5B explorers, 1.5B synthesizer", "small-to-big", alone),
    ("dev: 0.5B explorers, 1.5B synthesizer", "small-to-big-dev", plain),
]

print("| configuration (N=4) | problems | mode | accuracy | cost per query | synthesizer calls |")
print("|---|--:|---|--:|--:|--:|")
for label, name, read in CONFIGS:
    rows = [modes(*read(line)) for line in lines(name)]
    for mode in ("synthesize", "vote", "weighted_vote", "vote_first"):
        cells = [row[mode] for row in rows if mode in row]
        if not cells:
            continue
        n = len(cells)
        accuracy = 100 * sum(c[0] for c in cells) / n
        print(
            f"| {label} | {n} | {mode} | {accuracy:.1f} | {sum(c[1] for c in cells) / n:.6f} "
            f"| {sum(c[2] for c in cells)}/{n} |"
        )
