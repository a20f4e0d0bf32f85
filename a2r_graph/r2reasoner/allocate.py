"""Which tier answers a subtask: where it starts, and whether its answer escalates.

The rules need no training (``ReasonerSettings``): start on the smallest tier, on the tier
the decomposer's difficulty tag names, or on the largest; escalate to the next tier when the
answer has no result or its confidence is below ``escalate_below``, while the run's
cost is under ``budget``. A trained allocator is another ``Allocator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from a2r_graph.r2reasoner.context import ReasonerSettings


class Allocator(Protocol):
    def first_tier(self, subtask: dict[str, Any], tiers: int) -> int:
        """The index (0: smallest) of the tier a subtask goes to first."""
        ...

    def escalate(self, result: str | None, confidence: float | None, spent: float) -> bool:
        """Whether an answer (its ``result``) goes to the next tier, given the run's cost
        so far."""
        ...


@dataclass(frozen=True)
class RuleAllocator:
    settings: ReasonerSettings

    def first_tier(self, subtask: dict[str, Any], tiers: int) -> int:
        start = self.settings.start
        if start == "tag":
            start = "largest" if subtask.get("difficulty") == "hard" else "smallest"
        return tiers - 1 if start == "largest" else 0

    def escalate(self, result: str | None, confidence: float | None, spent: float) -> bool:
        threshold, budget = self.settings.escalate_below, self.settings.budget
        if threshold is None or (budget is not None and spent >= budget):
            return False
        return result is None or (confidence is not None and confidence < threshold)


def allocator_for(settings: ReasonerSettings) -> Allocator:
    return RuleAllocator(settings)
