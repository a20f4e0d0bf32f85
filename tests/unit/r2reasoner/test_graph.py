"""The R2-Reasoner graph (a2r_graph.r2reasoner.graph) over fake tiers: plans run level by level
(in parallel within a level, each prompt with only its dependencies' results), escalation by
confidence and budget, unusable plans falling back, usage by tier, and resume."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from a2r_graph.errors import EndpointUnavailableError
from a2r_graph.r2reasoner.context import ReasonerContext
from a2r_graph.r2reasoner.graph import build_reasoner_graph
from tests.fakes import connection_error, reply
from tests.r2reasoner_fakes import (
    QUESTION,
    SURE,
    UNSURE,
    answers,
    context,
    kind_of,
    plan,
    serve,
    step_of,
)


async def run(factory: Any, ctx: ReasonerContext, **graph: Any) -> dict[str, Any]:
    return await build_reasoner_graph(factory, **graph).ainvoke({"question": QUESTION}, context=ctx)


async def test_levels_run_in_order_in_parallel_with_only_their_dependencies_results():
    """Catches: a level serialized (the two steps of level 1 wait on each other: a
    serialized run deadlocks), a step run before its dependencies, a prompt missing a result
    it needs or carrying one it does not depend on, and the summary missing a step."""
    both_started = asyncio.Event()
    started: set[int] = set()

    async def small(prompt: str) -> AIMessage:
        step = step_of(prompt)
        started.add(step)
        if {1, 2} <= started:
            both_started.set()
        if step in (1, 2):
            await asyncio.wait_for(both_started.wait(), 5)
        return reply(f"\\boxed{{{ {1: '12', 2: '15', 3: '27'}[step] }}}", logprobs=SURE)

    tiers, factory = serve(plan((1, []), (2, []), (3, [1, 2])), small)
    result = await run(factory, context())
    prompts = tiers["small-model"].prompts("subtask")
    assert [step_of(p) for p in prompts][2] == 3
    assert "Step 1 (step 1): 12" in prompts[2] and "Step 2 (step 2): 15" in prompts[2]
    assert all("Results of earlier steps" not in p for p in prompts[:2])
    summary = tiers["large-model"].prompts("summary")[0]
    assert all(f"Step {i} (step {i}): {v}" in summary for i, v in [(1, 12), (2, 15), (3, 27)])
    assert result["boxed_answer"] == "27"
    assert [(s["id"], s["tier"], s["boxed"]) for s in result["subtasks"]] == [
        (1, "small", "12"), (2, "small", "15"), (3, "small", "27"),
    ]  # fmt: skip
    assert result["plan"] == {"status": "ok", "attempts": 1, "subtasks": 3, "errors": []}


async def test_the_plan_is_asked_for_with_the_servers_structured_outputs():
    """Catches: a plan request without ``response_format`` (the server left free to write
    prose), or a schema that allows more subtasks than ``max_subtasks``."""
    tiers, factory = serve(plan((1, [])), answers({1: "27"}))
    await run(factory, context(max_subtasks=3))
    _, request = tiers["large-model"].calls[0]
    response_format = request["extra_body"]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"]["properties"]["subtasks"]["maxItems"] == 3


async def test_usage_and_shares_are_counted_by_tier():
    """Catches: a tier's calls missing from usage (the plan's or the summary's), or shares
    that do not add up."""
    tiers, factory = serve(plan((1, []), (2, [1])), answers({1: "5", 2: "27"}))
    result = await run(factory, context())
    usage = result["usage"]
    assert usage["small"]["calls"] == 2 and usage["large"]["calls"] == 2  # plan + summary
    assert usage["small"]["output_tokens"] == 40 and usage["large"]["output_tokens"] == 48
    assert usage["total"]["cost"] == pytest.approx(40 * 1e-6 + 48 * 10e-6)
    assert result["shares"]["small"]["output_tokens"] == pytest.approx(40 / 88, abs=1e-4)
    assert sum(share["cost"] for share in result["shares"].values()) == pytest.approx(1, abs=1e-3)


async def test_an_unsure_answer_escalates_to_the_next_tier():
    """Catches: escalation ignored (the small tier's unsure answer kept), a sure answer
    escalated anyway, or the escalation not counted."""

    def small(prompt: str) -> AIMessage:
        step = step_of(prompt)
        return reply(f"\\boxed{{{step}}}", logprobs=UNSURE if step == 2 else SURE)

    tiers, factory = serve(plan((1, []), (2, [1])), small, answers({2: "27"}))
    result = await run(factory, context(escalate_below=3.0))
    kept = {s["id"]: (s["tier"], s["escalations"], s["boxed"]) for s in result["subtasks"]}
    assert kept == {1: ("small", 0, "1"), 2: ("large", 1, "27")}
    assert [a["tier"] for a in result["subtasks"][1]["attempts"]] == ["small", "large"]
    assert result["escalations"] == 1
    assert len(tiers["large-model"].prompts("subtask")) == 1


async def test_an_empty_answer_escalates_and_the_budget_stops_it():
    """Catches: a subtask with no result passed on as is, or escalation past the budget."""

    def small(prompt: str) -> AIMessage:
        return reply("", logprobs=SURE)

    _, factory = serve(plan((1, [])), small, answers({1: "27"}))
    result = await run(factory, context(escalate_below=0.0))
    assert result["subtasks"][0]["tier"] == "large"
    _, factory = serve(plan((1, [])), small, answers({1: "27"}))
    result = await run(factory, context(escalate_below=0.0, budget=0.0))
    assert (result["subtasks"][0]["tier"], result["subtasks"][0]["result"]) == ("small", None)


async def test_an_answer_without_a_box_is_its_last_line():
    """Catches: a bare answer ("12", as a small model answers a step) dropped, escalated,
    or missing from the steps that depend on it."""

    def small(prompt: str) -> AIMessage:
        return reply("Working it out.\n12" if step_of(prompt) == 1 else "\\boxed{27}")

    tiers, factory = serve(plan((1, []), (2, [1])), small)
    result = await run(factory, context(escalate_below=0.0))
    assert [(s["tier"], s["result"]) for s in result["subtasks"]] == [
        ("small", "12"),
        ("small", "27"),
    ]
    assert "Step 1 (step 1): 12" in tiers["small-model"].prompts("subtask")[1]


async def test_hard_subtasks_start_on_the_largest_tier_with_start_tag():
    """Catches: the decomposer's difficulty tag ignored by ``start: tag``."""
    tiers, factory = serve(plan((1, []), (2, [1]), hard=(2,)), answers({1: "5", 2: "27"}))
    result = await run(factory, context(start="tag"))
    assert [s["tier"] for s in result["subtasks"]] == ["small", "large"]


@pytest.mark.parametrize(
    ("bad", "why"),
    [("Step 1: add up.", "not a plan"), (plan((1, [2]), (2, [1])).content, "cycle")],
)
async def test_an_unusable_plan_is_retried_then_the_question_goes_whole_to_the_summarizer(bad, why):
    """Catches: prose or a cyclic plan run as subtasks, no retry, the fallback not recorded
    as such, or the whole question given to a smaller summarizer instead of the top tier."""
    replies = iter([reply(bad), reply(bad)])
    tiers, factory = serve(lambda prompt: next(replies), answers({}))
    result = await run(factory, context(summarizer="small"))
    assert result["plan"]["status"] == "fallback" and result["plan"]["attempts"] == 2
    assert result["plan"]["subtasks"] == 0
    assert all(why in error for error in result["plan"]["errors"])
    assert result["subtasks"] == [] and result["boxed_answer"] == "27"
    assert tiers["small-model"].calls == []
    assert len(tiers["large-model"].prompts("direct")) == 1
    temperatures = [request["temperature"] for _, request in tiers["large-model"].calls[:2]]
    assert temperatures[1] >= 0.7  # greedy decoding would write the same plan again


async def test_a_run_killed_mid_plan_resumes_without_paying_again_for_finished_subtasks():
    """Catches: a resumed run that re-plans or re-asks finished subtasks (paying twice)."""
    fail_once = {2: True}

    def small(prompt: str) -> Any:
        step = step_of(prompt)
        if fail_once.pop(step, False):
            return connection_error()
        return reply(f"\\boxed{{{step}}}", logprobs=SURE)

    tiers, factory = serve(plan((1, []), (2, [1]), (3, [2])), small)
    graph = build_reasoner_graph(factory, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(EndpointUnavailableError):
        await graph.ainvoke({"question": QUESTION}, config, context=context())
    result = await graph.ainvoke(None, config, context=context())
    assert [step_of(p) for p in tiers["small-model"].prompts("subtask")] == [1, 2, 2, 3]
    assert len(tiers["large-model"].prompts("plan")) == 1
    assert result["boxed_answer"] == "27" and len(result["subtasks"]) == 3
    assert result["usage"]["small"]["calls"] == 3  # the failed call reported no usage


async def test_each_finished_subtask_is_streamed():
    """Catches: subtasks reported only at the end of the run."""
    _, factory = serve(plan((1, []), (2, [1])), answers({1: "5", 2: "27"}))
    graph = build_reasoner_graph(factory)
    events = [
        chunk
        async for chunk in graph.astream(
            {"question": QUESTION}, context=context(), stream_mode="custom"
        )
    ]
    assert [(e["event"], e["id"], e["tier"], e["boxed"]) for e in events] == [
        ("subtask_done", 1, "small", "5"), ("subtask_done", 2, "small", "27"),
    ]  # fmt: skip


async def test_without_plan_attempts_the_summarizer_alone_answers_the_whole_question():
    """Catches: the baseline configuration (the large tier alone) paying for a plan."""
    tiers, factory = serve(plan((1, [])), answers({1: "27"}))
    result = await run(factory, context(plan_attempts=0))
    assert result["plan"] == {"status": "off", "attempts": 0, "subtasks": 0, "errors": []}
    assert [kind_of(p) for p, _ in tiers["large-model"].calls] == ["direct"]
    assert tiers["small-model"].calls == [] and result["usage"]["total"]["calls"] == 1
