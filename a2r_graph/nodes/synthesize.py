"""Synthesize: the synthesizer re-reasons over question + references (or, in the select
mode, names the best reference, whose answer becomes the run's)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from a2r_graph.calls import complete
from a2r_graph.chat_models import ChatModelFactory
from a2r_graph.context import A2RContext, ReferenceOptions
from a2r_graph.policies import arrange, selected_index
from a2r_graph.runtime import context_of
from a2r_graph.state import A2RState, stage_usage, total_usage


async def synthesize(
    state: A2RState, runtime: Runtime[A2RContext], *, chat_model: ChatModelFactory
) -> dict:
    context = context_of(runtime)
    stage = context.synthesizer
    synthesis = await complete(
        chat_model(stage, context.request_timeout_s),
        state["synthesizer_prompt"],
        "synthesizer",
        stage,
        context,
        seed=stage.seed,
        session=state.get("session"),
    )
    synthesize_usage = stage_usage([synthesis])
    answer, boxed, decisions = synthesis["answer"], synthesis["boxed"], state.get("decisions", {})
    if context.synthesis_mode == "select":
        chosen = selected_index(synthesis["boxed"], state["reference_paths"])
        decisions = {**decisions, "selected": chosen}
        if chosen is None:  # the selector named no reference: the most common answer
            usable = [p for p in state["paths"] if p["error"] is None]
            chosen = arrange(usable, ReferenceOptions(order="grouped"))[0]["index"]
        path = next(p for p in state["paths"] if p["index"] == chosen)
        answer, boxed = path["answer"], path["boxed"]
    return {
        "synthesis": synthesis,
        "answer": answer,
        "boxed_answer": boxed,
        "decisions": decisions,
        "usage": {
            "synthesize": synthesize_usage,
            "total": total_usage(state["usage"]["explore"], synthesize_usage),
        },
    }
