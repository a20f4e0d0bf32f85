"""Explore: one explorer path (trace + answer component) per branch."""

from __future__ import annotations

from langgraph.runtime import Runtime

from a2r_graph.calls import complete
from a2r_graph.chat_models import ChatModelFactory
from a2r_graph.context import A2RContext
from a2r_graph.errors import EndpointUnavailableError
from a2r_graph.prompts import render_explorer_prompt
from a2r_graph.runtime import context_of
from a2r_graph.state import ExplorerPath, ExplorerTask, TokenUsage


async def explore(
    task: ExplorerTask, runtime: Runtime[A2RContext], *, chat_model: ChatModelFactory
) -> dict:
    context = context_of(runtime)
    stage, index = context.explorer, task["index"]
    try:
        completion = await complete(
            chat_model(stage, context.request_timeout_s),
            render_explorer_prompt(task["question"], context.prompts_dir, context.prompts.explorer),
            "explorer",
            stage,
            context,
            seed=None if stage.seed is None else stage.seed + index,
            path_index=index,
            confidence=context.confidence,
            session=task.get("session"),
        )
    except EndpointUnavailableError as failure:  # a 4xx is not caught: it would fail every path
        path = failed_path(index, stage.model, str(failure))
    else:
        error = (
            None
            if completion["answer"]
            else f"no answer component (finish_reason={completion['finish_reason']})"
        )
        path = ExplorerPath(**completion, index=index, error=error, answered=True)
    runtime.stream_writer(explorer_progress(path, context.n))
    return {"paths": [path]}


def explorer_progress(path: ExplorerPath, n: int) -> dict:
    """The ``custom`` stream event of a finished path; count them for "k of N done"."""
    return {
        "event": "explorer_done",
        "index": path["index"],
        "n": n,
        "ok": path["error"] is None,
        "boxed": path["boxed"],
        "output_tokens": path["usage"]["output_tokens"],
        "confidence": path.get("confidence"),
    }


def failed_path(index: int, model: str, error: str) -> ExplorerPath:
    """A path whose call failed: no text, no usage; resuming the run samples it again."""
    no_usage = TokenUsage(input_tokens=0, output_tokens=0, cost=0.0)
    return ExplorerPath(
        index=index, error=error, answered=False,
        model=model, trace="", answer="", boxed=None, finish_reason=None, usage=no_usage,
    )  # fmt: skip
