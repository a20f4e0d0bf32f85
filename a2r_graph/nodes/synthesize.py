"""Synthesize: the synthesizer re-reasons over question + references (or, in the select
mode, names the best reference, whose answer becomes the run's)."""

from __future__ import annotations

import logging
from typing import cast

from langgraph.runtime import Runtime

from a2r_graph.calls import complete
from a2r_graph.chat_models import ChatModelFactory
from a2r_graph.context import A2RContext, ReferenceOptions
from a2r_graph.endpoint import forget_context_window, is_context_overflow
from a2r_graph.errors import ModelRequestError
from a2r_graph.nodes.reduce import reduce
from a2r_graph.policies import arrange, selected_index
from a2r_graph.runtime import context_of
from a2r_graph.state import A2RState, Aggregation, Completion, stage_usage, total_usage

logger = logging.getLogger(__name__)


async def synthesize(
    state: A2RState, runtime: Runtime[A2RContext], *, chat_model: ChatModelFactory
) -> dict:
    context = context_of(runtime)
    stage = context.synthesizer

    async def call(prompt: str) -> Completion:
        return await complete(
            chat_model(stage, context.request_timeout_s),
            prompt,
            "synthesizer",
            stage,
            context,
            seed=stage.seed,
            session=state.get("session"),
        )

    refit: dict = {}
    try:
        synthesis = await call(state["synthesizer_prompt"])
    except ModelRequestError as error:
        if stage.context_window is not None or not is_context_overflow(error):
            raise
        # The window the prompt was fitted to is out of date (the server restarted with a
        # smaller --max-model-len): read it again and fit the references once more.
        forget_context_window(stage)
        refit = await reduce(state, runtime)
        if refit["synthesizer_prompt"] == state["synthesizer_prompt"]:
            raise
        logger.warning(
            "the synthesizer's server rejected the prompt as too long for its window; "
            "fitted again to its %s-token window",
            refit["reference_fit"]["context_window"],
        )
        state = cast(A2RState, {**state, **refit})
        synthesis = await call(state["synthesizer_prompt"])
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
    if "aggregation" not in decisions:  # vote_first says why it came here
        by = "selector" if context.synthesis_mode == "select" else "synthesizer"
        decisions = {
            **decisions,
            "aggregation": Aggregation(by=by, why=f"synthesis_mode {context.synthesis_mode}"),
        }
    return {
        **{
            key: refit[key]
            for key in ("synthesizer_prompt", "reference_fit", "reference_paths")
            if key in refit
        },
        "synthesis": synthesis,
        "answer": answer,
        "boxed_answer": boxed,
        "decisions": decisions,
        "usage": {
            "synthesize": synthesize_usage,
            "total": total_usage(state["usage"]["explore"], synthesize_usage),
        },
    }
