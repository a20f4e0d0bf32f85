"""Decide, after each wave of explorers: explore more, answer without the synthesizer (the
shortcut, or a vote of ``synthesis_mode``), or reduce."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from a2r_graph.context import VOTES, A2RContext
from a2r_graph.nodes.announce import announce
from a2r_graph.policies import (
    agreement,
    budget_reached,
    spent,
    usable_paths,
    vote,
    vote_decides,
    wave_size,
)
from a2r_graph.runtime import context_of
from a2r_graph.state import (
    A2RState,
    Aggregation,
    Decisions,
    ExplorerPath,
    ExplorerTask,
    StageUsage,
    stage_usage,
)

Goto = Literal["explore", "reduce", "__end__"]


async def decide(state: A2RState, runtime: Runtime[A2RContext]) -> Command[Goto]:
    context = context_of(runtime)
    paths = state["paths"]
    usable = [path for path in paths if path["error"] is None]
    agreed = agreement(usable, context.agreement, context.confidence) if usable else None
    decisions: Decisions = {**state.get("decisions", {}), "agreed": agreed}
    explored = {path["index"] for path in paths}
    missing = [i for i in range(context.n) if i not in explored]
    if missing and agreed is None:
        if not budget_reached(context.budget, paths):
            wave = missing[: wave_size(context, len(explored))]
            session = state.get("session", "")
            decisions["waves"] = [*decisions.get("waves", []), wave]
            await announce(runtime, "wave_started", paths=wave, explored=len(explored))
            return Command(
                update={"decisions": decisions},
                goto=[
                    Send(
                        "explore",
                        ExplorerTask(question=state["question"], index=i, session=session),
                    )
                    for i in wave
                ],
            )
        reached = {"spent": spent(paths), "skipped": missing}
        decisions["budget_reached"] = reached
        await announce(runtime, "budget_reached", **reached)
    if not (context.shortcut and agreed and len(usable) >= context.min_paths):
        if context.synthesis_mode in VOTES:
            return await _vote(state, runtime, decisions)
        return Command(update={"decisions": decisions}, goto="reduce")
    decisions["shortcut"] = True
    decisions["aggregation"] = Aggregation(
        by="shortcut", why=f"{len(agreed['paths'])} of {len(usable)} usable paths agree"
    )
    await announce(runtime, "shortcut_taken", **agreed)
    return _answer_by_path(paths, agreed["paths"][0], decisions)


async def _vote(state: A2RState, runtime: Runtime[A2RContext], decisions: Decisions) -> Command:
    """``vote`` and ``weighted_vote`` answer by the vote; ``vote_first`` only when it
    decides, else the synthesizer does (the reason is in ``decisions.aggregation``)."""
    context = context_of(runtime)
    mode = context.synthesis_mode
    usable = usable_paths(state["paths"], context.min_paths)
    weight_by = (
        context.confidence.measure if mode == "weighted_vote" and context.confidence else None
    )
    found = vote(usable, weight_by)
    by = "weighted_vote" if weight_by else "vote"
    if found is None:
        why = f"none of the {len(usable)} usable paths has a final answer"
    else:
        leader = f"{found['boxed']!r} holds {len(found['paths'])} of {len(usable)} usable paths"
        why = f"{leader}, tied with another answer" if found["tied"] else leader
    if mode == "vote_first" and not vote_decides(found, len(usable), context.vote_first):
        rule = context.vote_first
        decisions["aggregation"] = Aggregation(
            by="synthesizer",
            why=f"no decisive vote ({why}; vote_first needs one answer alone at the top with "
            f">= {rule.min_paths} paths and >= {rule.min_share:.0%} of them)",
            vote=found,
        )
        return Command(update={"decisions": decisions}, goto="reduce")
    decisions["aggregation"] = Aggregation(by=by, why=why, vote=found)
    await announce(runtime, "voted", by=by, why=why, paths=found["paths"] if found else [])
    if found is None:
        return _answer_by_path(state["paths"], None, decisions)
    return _answer_by_path(state["paths"], found["paths"][0], decisions)


def _answer_by_path(paths: list[ExplorerPath], index: int | None, decisions: Decisions) -> Command:
    """End the run with path ``index``'s answer (None: no answer), without a synthesizer call."""
    chosen = next((path for path in paths if path["index"] == index), None)
    explore_usage = stage_usage(paths)
    return Command(
        update={
            "decisions": decisions,
            "answer": chosen["answer"] if chosen else "",
            "boxed_answer": chosen["boxed"] if chosen else None,
            "synthesis": None,
            "usage": {
                "explore": explore_usage,
                "synthesize": StageUsage(calls=0, input_tokens=0, output_tokens=0, cost=0.0),
                "total": explore_usage,
            },
        },
        goto=END,
    )
