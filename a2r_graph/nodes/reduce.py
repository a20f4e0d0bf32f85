"""Reduce: build the synthesizer's prompt from the usable answer components."""

from __future__ import annotations

from functools import partial

from langgraph.runtime import Runtime

from a2r_graph.context import A2RContext
from a2r_graph.endpoint import context_window, count_prompt_tokens
from a2r_graph.fit import fit_references
from a2r_graph.policies import arrange, most_confident, usable_paths
from a2r_graph.runtime import context_of
from a2r_graph.state import A2RState, stage_usage


async def reduce(state: A2RState, runtime: Runtime[A2RContext]) -> dict:
    context = context_of(runtime)
    paths = state["paths"]
    usable = usable_paths(paths, context.min_paths)
    decisions = state.get("decisions", {})
    if context.top_references is not None and context.confidence is not None:
        usable = most_confident(usable, context.top_references, context.confidence.measure)
        decisions = {**decisions, "references": [path["index"] for path in usable]}
    usable = arrange(usable, context.references)
    stage, timeout_s = context.synthesizer, context.request_timeout_s
    prompt, fit = await fit_references(
        state["question"],
        # Answer components only: the traces never reach the synthesizer.
        [(path["index"], path["answer"]) for path in usable],
        context,
        stage.context_window or await context_window(stage, timeout_s),
        partial(count_prompt_tokens, stage, timeout_s=timeout_s),
    )
    return {
        "synthesizer_prompt": prompt,
        "reference_fit": fit,
        "reference_paths": [p["index"] for p in usable if p["index"] not in fit["dropped"]],
        "decisions": decisions,
        "usage": {"explore": stage_usage(paths)},
    }
