"""The R2-Reasoner graph's state, and what a run returns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from typing_extensions import TypedDict

from a2r_graph.state import StageUsage, sum_usage


class Call(TypedDict):
    """One model call: the tier it went to and what its server reported."""

    tier: str
    input_tokens: int
    output_tokens: int
    cost: float


class Attempt(Call):
    """A subtask's answer from one tier."""

    boxed: str | None
    confidence: float | None
    """The answer's confidence (``r2reasoner.measure``); None without logprobs."""


class SubtaskResult(TypedDict):
    id: int
    task: str
    depends_on: list[int]
    difficulty: str
    tier: str
    """The tier whose answer was kept (the last attempt's)."""
    escalations: int
    answer: str
    boxed: str | None
    result: str | None
    """What later subtasks and the summary read: the boxed answer, else the answer's last
    line; None when the tier wrote nothing."""
    attempts: list[Attempt]


class PlanOutcome(TypedDict):
    status: str
    """ok: the subtasks ran; fallback: no usable plan, the summarizer answered the whole
    question; off: none was asked for (``plan_attempts`` 0)."""
    attempts: int
    subtasks: int
    """How many subtasks the plan has (0 without one)."""
    errors: list[str]
    """Why each refused decomposition was refused."""


class ReasonerInput(TypedDict):
    question: str


class ReasonerOutput(TypedDict):
    question: str
    answer: str
    boxed_answer: str | None
    plan: PlanOutcome
    subtasks: list[SubtaskResult]
    """In plan order, each with its tier, escalations, answer and attempts."""
    escalations: int
    usage: dict[str, StageUsage]
    """Per tier name and "total": calls, server-reported tokens, cost."""
    shares: dict[str, dict[str, float]]
    """Per tier: its share of the run's output tokens and of its cost."""


def merge_results(
    old: dict[str, SubtaskResult], new: dict[str, SubtaskResult] | None
) -> dict[str, SubtaskResult]:
    """Reducer of the subtasks' results by id; None starts a new run's."""
    return {} if new is None else {**old, **new}


class ReasonerState(ReasonerInput, ReasonerOutput):  # type: ignore[misc]
    started_question: str
    """The question the saved plan is for (a thread's unfinished run goes on only for it)."""
    finished: bool
    steps: list[dict[str, Any]] | None
    """The plan's subtasks (``plan.Subtask`` dumps); None: no usable plan."""
    plan_calls: list[Call]
    summary_call: Call
    results: Annotated[dict[str, SubtaskResult], merge_results]


def usage_by_tier(calls: Iterable[Call], tiers: Iterable[str]) -> dict[str, StageUsage]:
    """The calls' usage per tier (every tier, called or not) and in ``total``."""
    calls = list(calls)
    usage = {
        tier: StageUsage(
            calls=sum(1 for c in calls if c["tier"] == tier),
            **sum_usage(c for c in calls if c["tier"] == tier),
        )
        for tier in tiers
    }
    usage["total"] = StageUsage(calls=len(calls), **sum_usage(calls))
    return usage


def shares_of(usage: dict[str, StageUsage]) -> dict[str, dict[str, float]]:
    total = usage["total"]
    return {
        tier: {
            "output_tokens": round(u["output_tokens"] / max(total["output_tokens"], 1), 4),
            "cost": round(u["cost"] / total["cost"], 4) if total["cost"] else 0.0,
        }
        for tier, u in usage.items()
        if tier != "total"
    }
