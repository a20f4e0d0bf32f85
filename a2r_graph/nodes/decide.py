"""Decide, after each wave of explorers: explore more, answer by the shortcut, or reduce."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from a2r_graph.context import A2RContext
from a2r_graph.nodes.announce import announce
from a2r_graph.policies import agreement, budget_reached, spent, wave_size
from a2r_graph.runtime import context_of
from a2r_graph.state import A2RState, Decisions, ExplorerTask, StageUsage, stage_usage


async def decide(
    state: A2RState, runtime: Runtime[A2RContext]
) -> Command[Literal["explore", "reduce", "__end__"]]:
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
        return Command(update={"decisions": decisions}, goto="reduce")
    decisions["shortcut"] = True
    await announce(runtime, "shortcut_taken", **agreed)
    first = next(path for path in paths if path["index"] == agreed["paths"][0])
    explore_usage = stage_usage(paths)
    return Command(
        update={
            "decisions": decisions,
            "answer": first["answer"],
            "boxed_answer": first["boxed"],
            "synthesis": None,
            "usage": {
                "explore": explore_usage,
                "synthesize": StageUsage(calls=0, input_tokens=0, output_tokens=0, cost=0.0),
                "total": explore_usage,
            },
        },
        goto=END,  # type: ignore[arg-type]  # END is "__end__", typed str
    )
