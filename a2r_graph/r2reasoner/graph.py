"""The R2-Reasoner graph: decompose -> schedule -> solve x level ... -> summarize.

``decompose`` has a tier write the subtasks as JSON (constrained by the server's structured
outputs); ``schedule`` sends the next level's subtasks, each to ``solve`` in parallel
(``Send``), until none is left; ``solve`` answers one subtask on the tier the allocator
chooses, escalating while its answer is unsure; ``summarize`` writes the final ``\\boxed{}``
from the subtasks' results, or answers the whole question when no plan was usable. The
checkpointer keeps each finished subtask, so a run killed mid-way resumes without paying
for them again. Streamed: ``custom`` events ``{"event": "subtask_done", ...}`` as each
subtask finishes; the summary's tokens as ``messages``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Unpack

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from typing_extensions import TypedDict

from a2r_graph.answers import last_boxed
from a2r_graph.calls import complete
from a2r_graph.chat_models import ChatModelFactory, vllm_chat_model
from a2r_graph.prompts import render_explorer_prompt
from a2r_graph.r2reasoner.allocate import Allocator, allocator_for
from a2r_graph.r2reasoner.context import ReasonerContext, Tier
from a2r_graph.r2reasoner.plan import Plan, PlanError, parse_plan, plan_schema, ready
from a2r_graph.r2reasoner.prompts import DECOMPOSE, SUMMARY, results_text, subtask_prompt
from a2r_graph.r2reasoner.state import (
    Attempt,
    Call,
    ReasonerInput,
    ReasonerOutput,
    ReasonerState,
    SubtaskResult,
    shares_of,
    usage_by_tier,
)
from a2r_graph.runtime import resolved_context
from a2r_graph.state import Completion, validated_question
from a2r_graph.telemetry import GraphOptions, Telemetry

NAME = "r2reasoner"
ReasonerGraph = CompiledStateGraph[ReasonerState, Any, ReasonerInput, ReasonerOutput]


class SubtaskTask(TypedDict):
    """What ``schedule`` sends to one ``solve`` branch."""

    question: str
    subtask: dict[str, Any]
    known: list[tuple[int, str, str | None]]
    """The results of the subtasks it depends on: (id, task, result)."""
    spent: float
    """The run's cost when its level started (for the budget)."""


def reasoner_context(runtime: Runtime[Any]) -> ReasonerContext:
    return resolved_context(runtime, ReasonerContext)


async def ask(
    context: ReasonerContext,
    tier: Tier,
    step: str,
    prompt: str,
    *,
    chat_model: ChatModelFactory,
    telemetry: Telemetry,
    **options: Any,
) -> tuple[Completion, Call]:
    """One call to ``tier`` for ``step`` (plan, subtask i, summary), traced and counted."""
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": tier.model,
        "a2r.stage": tier.name,
        "a2r.r2reasoner.step": step,
    }
    started = time.perf_counter()
    with telemetry.tracer.start_as_current_span(
        f"chat {tier.model}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        try:
            completion = await complete(
                chat_model(tier, context.request_timeout_s), prompt, tier.name, tier, context,
                **options,
            )  # fmt: skip
        except Exception as error:
            telemetry.metrics.call(attributes, time.perf_counter() - started, None, 0.0, error)
            raise
        usage = completion["usage"]
        span.set_attribute("gen_ai.usage.input_tokens", usage["input_tokens"])
        span.set_attribute("gen_ai.usage.output_tokens", usage["output_tokens"])
        span.set_attribute("a2r.cost", usage["cost"])
    telemetry.metrics.call(
        attributes,
        time.perf_counter() - started,
        (usage["input_tokens"], usage["output_tokens"]),
        usage["cost"],
    )
    return completion, Call(tier=tier.name, **usage)


async def decompose(
    state: ReasonerState,
    runtime: Runtime[Any],
    *,
    chat_model: ChatModelFactory,
    telemetry: Telemetry,
) -> dict:
    question = validated_question(state.get("question"))
    if state.get("started_question") == question and state.get("finished") is False:
        return {}  # this thread's unfinished run of the question goes on
    context = reasoner_context(runtime)
    settings = context.r2reasoner
    tier = context.tier(settings.decomposer)
    prompt = DECOMPOSE.format(question=question, max_subtasks=settings.max_subtasks)
    calls: list[Call] = []
    errors: list[str] = []
    plan: Plan | None = None
    for attempt in range(settings.plan_attempts):
        # a refused plan is asked again with sampling, which greedy decoding would repeat
        stage = tier.model_copy(
            update={
                "max_tokens": settings.plan_max_tokens,
                "temperature": tier.temperature if attempt == 0 else max(tier.temperature, 0.7),
            }
        )
        completion, call = await ask(
            context, stage, "plan", prompt, chat_model=chat_model, telemetry=telemetry,
            json_schema=plan_schema(settings.max_subtasks),
        )  # fmt: skip
        calls.append(call)
        try:
            plan = parse_plan(completion["answer"], settings.max_subtasks, settings.max_depth)
            break
        except PlanError as error:
            errors.append(str(error))
    return {
        "question": question,
        "started_question": question,
        "finished": False,
        "steps": None if plan is None else [s.model_dump() for s in plan.subtasks],
        "plan": {
            "status": "ok" if plan else "fallback" if settings.plan_attempts else "off",
            "attempts": len(calls),
            "subtasks": 0 if plan is None else len(plan.subtasks),
            "errors": errors,
        },
        "plan_calls": calls,
        "results": None,
    }


def schedule(state: ReasonerState) -> dict:
    return {}


def next_level(state: ReasonerState) -> list[Send] | str:
    """The next level's subtasks, each sent to ``solve``; ``summarize`` when none is left."""
    if not state.get("steps"):
        return "summarize"
    plan = Plan.model_validate({"subtasks": state["steps"]})
    results = state.get("results") or {}
    todo = ready(plan, {int(key) for key in results})
    if not todo:
        return "summarize"
    spent = sum(c["cost"] for c in _calls(state))
    return [
        Send(
            "solve",
            SubtaskTask(
                question=state["question"],
                subtask=subtask.model_dump(),
                known=[
                    (i, results[str(i)]["task"], results[str(i)]["result"])
                    for i in subtask.depends_on
                ],
                spent=spent,
            ),
        )
        for subtask in todo
    ]


async def solve(
    task: SubtaskTask, runtime: Runtime[Any], *, chat_model: ChatModelFactory, telemetry: Telemetry
) -> dict:
    context = reasoner_context(runtime)
    settings, subtask = context.r2reasoner, task["subtask"]
    allocator: Allocator = allocator_for(settings)
    prompt = subtask_prompt(task["question"], subtask["task"], task["known"])
    index = allocator.first_tier(subtask, len(context.tiers))
    attempts: list[Attempt] = []
    with telemetry.tracer.start_as_current_span("r2reasoner.subtask") as span:
        while True:
            tier = context.tiers[index]
            completion, call = await ask(
                context, tier, f"subtask {subtask['id']}", prompt, chat_model=chat_model,
                telemetry=telemetry, confidence=settings.confidence,
            )  # fmt: skip
            measures = completion.get("confidence")
            confidence = measures[settings.measure] if measures else None
            attempts.append(Attempt(**call, boxed=completion["boxed"], confidence=confidence))
            spent = task["spent"] + sum(a["cost"] for a in attempts)
            result_text = result_of(completion)
            if index + 1 >= len(context.tiers) or not allocator.escalate(
                result_text, confidence, spent
            ):
                break
            index += 1
        result = SubtaskResult(
            id=subtask["id"],
            task=subtask["task"],
            depends_on=subtask["depends_on"],
            difficulty=subtask["difficulty"],
            tier=tier.name,
            escalations=len(attempts) - 1,
            answer=completion["answer"],
            boxed=completion["boxed"],
            result=result_text,
            attempts=attempts,
        )
        span.set_attribute("a2r.r2reasoner.subtask", subtask["id"])
        span.set_attribute("a2r.r2reasoner.tier", tier.name)
        span.set_attribute("a2r.r2reasoner.escalations", result["escalations"])
        span.set_attribute("a2r.cost", sum(a["cost"] for a in attempts))
    get_stream_writer()(
        {
            "event": "subtask_done",
            "id": subtask["id"],
            "tier": tier.name,
            "escalations": result["escalations"],
            "boxed": result["boxed"],
            "result": result["result"],
        }
    )
    return {"results": {str(subtask["id"]): result}}


async def summarize(
    state: ReasonerState,
    runtime: Runtime[Any],
    *,
    chat_model: ChatModelFactory,
    telemetry: Telemetry,
) -> dict:
    context = reasoner_context(runtime)
    results = state.get("results") or {}
    subtasks = [results[str(step["id"])] for step in state.get("steps") or []]
    if subtasks:
        tier = context.tier(context.r2reasoner.summarizer)
        steps = results_text((s["id"], s["task"], s["result"]) for s in subtasks)
        prompt = SUMMARY.format(question=state["question"], steps=steps)
    else:  # no plan: the whole question, on the top tier
        tier = context.tiers[-1]
        prompt = render_explorer_prompt(state["question"], None, None)
    completion, call = await ask(
        context, tier, "summary", prompt, chat_model=chat_model, telemetry=telemetry
    )
    calls = [*_calls(state), call]
    usage = usage_by_tier(calls, [t.name for t in context.tiers])
    escalations = sum(s["escalations"] for s in subtasks)
    with telemetry.tracer.start_as_current_span("r2reasoner.result") as span:
        span.set_attribute("a2r.r2reasoner.plan", state["plan"]["status"])
        span.set_attribute("a2r.r2reasoner.subtasks", len(subtasks))
        span.set_attribute("a2r.r2reasoner.escalations", escalations)
        span.set_attribute("a2r.cost", usage["total"]["cost"])
    return {
        "answer": completion["answer"],
        "boxed_answer": last_boxed(completion["answer"]),
        "summary_call": call,
        "subtasks": subtasks,
        "escalations": escalations,
        "usage": usage,
        "shares": shares_of(usage),
        "finished": True,
    }


def result_of(completion: Completion, limit: int = 200) -> str | None:
    """A subtask's result: its ``\\boxed{}``, else its answer's last line (a small model
    often answers a step with the number alone), at most ``limit`` characters; None when
    it wrote nothing."""
    if completion["boxed"] is not None:
        return completion["boxed"]
    lines = [line.strip() for line in completion["answer"].splitlines() if line.strip()]
    return lines[-1][-limit:] if lines else None


def _calls(state: ReasonerState) -> list[Call]:
    """Every call of the run so far: the plan's and the subtasks' attempts."""
    results = (state.get("results") or {}).values()
    return [*state.get("plan_calls", []), *(a for r in results for a in r["attempts"])]


def build_reasoner_graph(
    chat_model: ChatModelFactory = vllm_chat_model,
    *,
    context_schema: type[BaseModel] = ReasonerContext,
    **options: Unpack[GraphOptions],
) -> ReasonerGraph:
    """Compile the R2-Reasoner graph; arguments as ``a2r_graph.graph.build_graph``'s."""
    telemetry = Telemetry(NAME, options)
    calls: dict[str, Any] = {"chat_model": chat_model, "telemetry": telemetry}
    builder: StateGraph[ReasonerState, Any, ReasonerInput, ReasonerOutput] = StateGraph(
        ReasonerState,
        context_schema=context_schema,
        input_schema=ReasonerInput,
        output_schema=ReasonerOutput,
    )
    builder.add_node("decompose", partial(decompose, **calls))
    builder.add_node("schedule", schedule)
    builder.add_node("solve", partial(solve, **calls))
    builder.add_node("summarize", partial(summarize, **calls))
    builder.add_edge(START, "decompose")
    builder.add_edge("decompose", "schedule")
    builder.add_conditional_edges("schedule", next_level, ["solve", "summarize"])
    builder.add_edge("solve", "schedule")
    builder.add_edge("summarize", END)
    compiled = builder.compile(checkpointer=options.get("checkpointer"), name=NAME)
    return compiled.with_config(recursion_limit=2 * 16 + 8)
