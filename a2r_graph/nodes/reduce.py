"""Reduce: build the synthesizer's prompt from the usable answer components."""

from __future__ import annotations

from langgraph.runtime import Runtime

from a2r_graph.context import A2RContext
from a2r_graph.errors import NotEnoughPathsError
from a2r_graph.prompts import render_synthesizer_prompt
from a2r_graph.runtime import context_of
from a2r_graph.state import A2RState, stage_usage


def reduce(state: A2RState, runtime: Runtime[A2RContext]) -> dict:
    context = context_of(runtime)
    paths = state["paths"]
    usable = [path for path in paths if path["error"] is None]
    if len(usable) < context.min_paths:
        failures = {path["index"]: path["error"] for path in paths if path["error"] is not None}
        raise NotEnoughPathsError(len(usable), context.min_paths, failures)
    return {
        # Answer components only: the traces never reach the synthesizer.
        "synthesizer_prompt": render_synthesizer_prompt(
            state["question"], [path["answer"] for path in usable], context.prompts_dir
        ),
        "usage": {"explore": stage_usage(paths)},
    }
