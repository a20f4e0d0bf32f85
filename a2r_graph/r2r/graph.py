"""The R2R graph: start -> step (looping) -> finish.

``start`` checks that both models share a tokenizer and renders the question's chat prompt
into token ids; each ``step`` is one SLM segment up to the router's first flagged token plus
the LLM's replacement, and the checkpointer saves the token ids after each, so a run killed
mid-way resumes from its saved prefix (``ainvoke(None, config)``, or the same question
again on the thread) without paying again for what was written; ``finish`` decodes the
output. Streamed with ``stream_mode="custom"``: ``{"model": "slm"|"llm", "text", "token_ids"}``
for each run of tokens a model wrote.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Unpack

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

from a2r_graph.answers import last_boxed
from a2r_graph.r2r.client import ServerFactory, token_server
from a2r_graph.r2r.context import MAX_OUTPUT_TOKENS, R2RContext
from a2r_graph.r2r.loop import MODELS, Step, with_retries
from a2r_graph.r2r.prepare import check_shared_tokenizer, prompt_ids
from a2r_graph.r2r.state import R2RInput, R2ROutput, R2RState, add_usage, empty_usage
from a2r_graph.runtime import resolved_context
from a2r_graph.state import StageUsage, validated_question
from a2r_graph.telemetry import GraphOptions, Telemetry

R2RGraph = CompiledStateGraph[R2RState, Any, R2RInput, R2ROutput]
RECURSION_LIMIT = MAX_OUTPUT_TOKENS + 16
"""Every step writes at least one token (or ends the run): steps <= max_tokens, plus start
and finish."""


def r2r_context(runtime: Runtime[Any]) -> R2RContext:
    return resolved_context(runtime, R2RContext)


def _saved_run_of(state: R2RState, question: str) -> bool:
    """This thread holds an unfinished run of ``question``: it goes on from its prefix."""
    return (
        state.get("started_question") == question
        and bool(state.get("prompt_ids"))
        and not state.get("done", True)
    )


async def start(state: R2RState, runtime: Runtime[Any], *, servers: ServerFactory) -> dict:
    question = validated_question(state.get("question"))
    if _saved_run_of(state, question):
        return {}
    context = r2r_context(runtime)
    timeout = context.request_timeout_s
    async with (
        servers(context.explorer, timeout, None) as slm,
        servers(context.synthesizer, timeout, None) as llm,
    ):
        await check_shared_tokenizer(slm, llm, context)
        ids = await prompt_ids(slm, context, question, state.get("prompt"))
    return {
        "question": question,
        "started_question": question,
        "prompt_ids": ids,
        "output_ids": [],
        "engines": {"slm": slm.engine, "llm": llm.engine},
        "done": False,
        "finish_reason": "",
        "switches": 0,
        "tokens": {"slm": 0, "llm": 0},
        "usage": empty_usage(),
        "cached_input_tokens": {"slm": 0, "llm": 0, "total": 0},
    }


async def step(
    state: R2RState, runtime: Runtime[Any], *, servers: ServerFactory, telemetry: Telemetry
) -> dict:
    context = r2r_context(runtime)
    timeout, engines = context.request_timeout_s, state["engines"]
    writer = get_stream_writer()

    def emit(model: str, text: str, ids: list[int]) -> None:
        writer({"model": model, "text": text, "token_ids": ids})

    output = state["output_ids"]
    with telemetry.tracer.start_as_current_span("r2r.step") as span:
        async with (
            servers(context.explorer, timeout, engines["slm"]) as slm,  # type: ignore[arg-type]
            servers(context.synthesizer, timeout, engines["llm"]) as llm,  # type: ignore[arg-type]
        ):
            step = Step(slm, llm, context, context.r2r.make_router(), telemetry, emit)
            result = await step.run([*state["prompt_ids"], *output], len(output))
        span.set_attribute("a2r.r2r.slm_tokens", len(result.slm_ids))
        span.set_attribute("a2r.r2r.llm_tokens", len(result.llm_ids))
    usage, cached = state["usage"], dict(state["cached_input_tokens"])
    for model in MODELS:
        tally = result.tallies[model]
        cost = context.cost(
            model, tally.input_tokens, tally.cached_input_tokens, tally.output_tokens
        )
        added = StageUsage(
            calls=tally.calls,
            input_tokens=tally.input_tokens,
            output_tokens=tally.output_tokens,
            cost=cost,
        )
        usage = add_usage(usage, model, added)
        for key in (model, "total"):
            cached[key] += tally.cached_input_tokens
    tokens = state["tokens"]
    return {
        "output_ids": [*output, *result.slm_ids, *result.llm_ids],
        "tokens": {
            "slm": tokens["slm"] + len(result.slm_ids),
            "llm": tokens["llm"] + len(result.llm_ids),
        },
        "switches": state["switches"] + (result.flagged is not None),
        "usage": usage,
        "cached_input_tokens": cached,
        "done": result.finish_reason is not None,
        "ends_with_stop_token": result.ends_with_stop_token,
        "finish_reason": result.finish_reason or "",
    }


def after_step(state: R2RState) -> str:
    return "finish" if state["done"] else "step"


async def finish(
    state: R2RState, runtime: Runtime[Any], *, servers: ServerFactory, telemetry: Telemetry
) -> dict:
    context = r2r_context(runtime)
    answer_ids = state["output_ids"][: -1 if state.get("ends_with_stop_token") else None]
    async with servers(
        context.explorer,
        context.request_timeout_s,
        state["engines"]["slm"],  # type: ignore[arg-type]
    ) as slm:
        answer = await with_retries(context, "slm", slm.stage, lambda: slm.detokenize(answer_ids))
    written = state["tokens"]["slm"] + state["tokens"]["llm"]
    with telemetry.tracer.start_as_current_span("r2r.result") as span:
        span.set_attribute("a2r.r2r.switches", state["switches"])
        span.set_attribute("a2r.r2r.llm_share", state["tokens"]["llm"] / max(written, 1))
        span.set_attribute("a2r.cost", state["usage"]["total"]["cost"])
    return {
        "answer": answer,
        "boxed_answer": last_boxed(answer),
        "router": {
            "name": context.r2r.router,
            "threshold": context.r2r.make_router().threshold,
            "slm": context.explorer.model,
            "llm": context.synthesizer.model,
        },
    }


def build_r2r_graph(
    servers: ServerFactory = token_server,
    *,
    context_schema: type[BaseModel] = R2RContext,
    **options: Unpack[GraphOptions],
) -> R2RGraph:
    """Compile the R2R graph. ``servers`` opens a ``TokenServer`` for an endpoint (tests: over
    a fake transport); the rest as ``a2r_graph.graph.build_graph``."""
    telemetry = Telemetry("r2r", options)
    builder: StateGraph[R2RState, Any, R2RInput, R2ROutput] = StateGraph(
        R2RState, context_schema=context_schema, input_schema=R2RInput, output_schema=R2ROutput
    )
    builder.add_node("start", partial(start, servers=servers))
    builder.add_node("step", partial(step, servers=servers, telemetry=telemetry))
    builder.add_node("finish", partial(finish, servers=servers, telemetry=telemetry))
    builder.add_edge(START, "start")
    builder.add_edge("start", "step")
    builder.add_conditional_edges("step", after_step, ["step", "finish"])
    builder.add_edge("finish", END)
    compiled = builder.compile(checkpointer=options.get("checkpointer"), name="r2r")
    return compiled.with_config(recursion_limit=RECURSION_LIMIT)
