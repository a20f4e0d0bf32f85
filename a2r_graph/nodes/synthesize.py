"""Synthesize: the synthesizer re-reasons over question + references."""

from __future__ import annotations

from langgraph.runtime import Runtime

from a2r_graph.calls import complete
from a2r_graph.chat_models import ChatModelFactory
from a2r_graph.context import A2RContext
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
    )
    synthesize_usage = stage_usage([synthesis])
    return {
        "synthesis": synthesis,
        "answer": synthesis["answer"],
        "boxed_answer": synthesis["boxed"],
        "usage": {
            "synthesize": synthesize_usage,
            "total": total_usage(state["usage"]["explore"], synthesize_usage),
        },
    }
