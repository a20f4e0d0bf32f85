"""Path confidence and the policies (shortcut, waves, reference filtering, budget, the vote
modes) with fakes."""

import math

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from a2r_graph import build_graph
from a2r_graph.confidence import path_confidence, token_confidences
from tests.fakes import factory, make_context, reply, scripted, token_logprobs

SURE = [-0.01, -5.0]  # token confidence 2.505
UNSURE = [-0.7, -0.7]  # token confidence 0.7


def boxed(answer, *, tokens=10, top=None):
    """An explorer reply boxing ``answer``; ``top``: each of its 4 tokens' candidates."""
    logprobs = token_logprobs(*[top] * 4) if top else None
    return reply(f"so \\boxed{{{answer}}}", output_tokens=tokens, logprobs=logprobs)


async def run(explorer_model, synthesizer, **context):
    graph = build_graph(factory(explorer_model, synthesizer))
    events, result = [], None
    async for mode, chunk in graph.astream(
        {"question": "q?"}, context=make_context(**context), stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            result = chunk
    return result, events


def named(events, name):
    return [event for event in events if event["event"] == name]


# -- confidence ------------------------------------------------------------------------


def test_token_confidence_is_the_negative_mean_top_k_logprob():
    confidences = token_confidences(token_logprobs([-0.1, -2.3], [-1.0, -1.0], [-0.0, -4.0]))
    assert confidences == pytest.approx([1.2, 1.0, 2.0])


def test_masked_candidates_are_not_doubt():
    assert token_confidences(token_logprobs([-0.5, -9999.0], [-9999.0])) == [0.5]


def test_path_measures_mean_lowest_window_and_tail():
    measures = path_confidence([3.0, 1.0, 1.0, 3.0, 2.0], group_size=2, tail_tokens=2)
    assert measures == {"mean": 2.0, "lowest_group": 1.0, "tail": 2.5, "tokens": 5}
    short = path_confidence([1.0, 2.0], group_size=8, tail_tokens=8)  # windows over all of it
    assert short == {"mean": 1.5, "lowest_group": 1.5, "tail": 1.5, "tokens": 2}
    assert path_confidence([], 2, 2) is None


@pytest.mark.parametrize(
    "logprobs",
    [
        None,
        "x",
        {"content": "x"},
        {"content": [None, 3, {"logprob": "a"}, {"top_logprobs": 7}]},
        {"content": [{"logprob": True}, {"logprob": math.nan}, {"logprob": 5.0}]},
    ],
)
def test_unreadable_logprobs_give_no_confidence_never_an_error(logprobs):
    assert token_confidences(logprobs) == []


async def test_explorers_ask_for_logprobs_only_when_confidence_is_on():
    explorer = scripted(boxed(1, top=SURE), boxed(2, top=UNSURE))
    result, events = await run(
        explorer,
        scripted(reply("\\boxed{1}")),
        n=2,
        confidence={"top_logprobs": 2, "group_size": 2},
    )
    assert all(
        kwargs["logprobs"] is True and kwargs["top_logprobs"] == 2 for _, kwargs in explorer.calls
    )
    confidences = {p["boxed"]: p["confidence"] for p in result["paths"]}
    assert confidences["1"]["mean"] == pytest.approx(2.505) and confidences["2"][
        "mean"
    ] == pytest.approx(0.7)
    assert {e["boxed"]: e["confidence"]["tokens"] for e in named(events, "explorer_done")} == {
        "1": 4,
        "2": 4,
    }

    plain = scripted(boxed(1), boxed(2))
    result, _ = await run(plain, scripted(reply("\\boxed{1}")), n=2)
    assert all("logprobs" not in kwargs for _, kwargs in plain.calls)
    assert all(p.get("confidence") is None for p in result["paths"])


# -- shortcut --------------------------------------------------------------------------


async def test_shortcut_skips_the_synthesizer_when_the_paths_agree():
    explorer = scripted(boxed("7"), boxed("7.0", tokens=20), boxed("\\text{7}", tokens=30))
    synthesizer = scripted()  # any call would fail: nothing is scripted
    result, events = await run(explorer, synthesizer, n=3, shortcut=True)
    assert synthesizer.calls == []
    assert result["boxed_answer"] == "7" and result["answer"] == "so \\boxed{7}"
    assert result["synthesis"] is None
    assert result["decisions"]["shortcut"] is True
    assert result["decisions"]["agreed"] == {"boxed": "7", "paths": [0, 1, 2], "share": 1.0}
    assert result["usage"]["synthesize"]["calls"] == 0
    assert (
        result["usage"]["total"]["output_tokens"]
        == 60
        == result["usage"]["explore"]["output_tokens"]
    )
    [event] = named(events, "shortcut_taken")
    assert event["paths"] == [0, 1, 2] and event["boxed"] == "7"


@pytest.mark.parametrize(
    ("answers", "agreement", "taken"),
    [
        (["7", "7", "8"], {}, False),  # default: all must agree
        (["7", "7", "8"], {"min_share": 0.6}, True),
        (["7", "8", "9"], {"min_share": 0.6}, False),
        (["7", None, "7"], {"min_share": 0.6, "min_paths": 3}, False),
    ],
)
async def test_shortcut_needs_the_agreement_rule(answers, agreement, taken):
    explorer = scripted(*[boxed(a) if a else reply("no box") for a in answers])
    synthesizer = scripted(reply("\\boxed{7}"))
    result, events = await run(explorer, synthesizer, n=3, shortcut=True, agreement=agreement)
    assert len(synthesizer.calls) == (0 if taken else 1)
    assert bool(result["decisions"].get("shortcut")) is taken
    assert bool(named(events, "shortcut_taken")) is taken


async def test_shortcut_with_min_confidence_needs_every_agreeing_path_sure():
    confidence = {"top_logprobs": 2, "measure": "mean"}
    agreement = {"min_confidence": 2.0}
    sure = scripted(boxed(7, top=SURE), boxed(7, top=SURE))
    result, _ = await run(
        sure, scripted(), n=2, shortcut=True, confidence=confidence, agreement=agreement
    )
    assert result["decisions"]["shortcut"] is True

    mixed, synthesizer = (
        scripted(boxed(7, top=SURE), boxed(7, top=UNSURE)),
        scripted(reply("\\boxed{7}")),
    )
    result, _ = await run(
        mixed, synthesizer, n=2, shortcut=True, confidence=confidence, agreement=agreement
    )
    assert len(synthesizer.calls) == 1 and not result["decisions"].get("shortcut")


async def test_a_shortcut_run_is_finished_so_asking_again_samples_anew():
    from langgraph.checkpoint.memory import InMemorySaver

    explorer = scripted(boxed(7), boxed(7), boxed(7), boxed(7))
    graph = build_graph(factory(explorer, scripted()), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    context = make_context(n=2, shortcut=True)
    await graph.ainvoke({"question": "q?"}, config, context=context)
    again = await graph.ainvoke({"question": "q?"}, config, context=context)
    assert len(explorer.calls) == 4 and again["decisions"]["shortcut"] is True


# -- waves (adaptive N) and budget -----------------------------------------------------


async def test_waves_stop_exploring_once_the_first_wave_agrees():
    explorer = scripted(boxed(5), boxed(5))
    synthesizer = scripted(reply("\\boxed{5}"))
    result, events = await run(explorer, synthesizer, n=4, waves=[2])
    assert len(explorer.calls) == 2 and [p["index"] for p in result["paths"]] == [0, 1]
    assert result["decisions"]["waves"] == [[0, 1]]
    assert named(events, "wave_started") == []
    assert synthesizer.calls[0][0].count("<reference") == 2  # synthesis over what was explored


async def test_waves_explore_on_while_the_paths_disagree():
    explorer = scripted(boxed(5), boxed(6), boxed(6), boxed(6))
    result, events = await run(explorer, scripted(reply("\\boxed{6}")), n=4, waves=[2])
    assert len(explorer.calls) == 4
    assert result["decisions"]["waves"] == [[0, 1], [2, 3]]
    [wave] = named(events, "wave_started")
    assert wave == {"event": "wave_started", "paths": [2, 3], "explored": 2}


async def test_waves_and_shortcut_together_answer_from_the_first_wave():
    explorer, synthesizer = scripted(boxed(5), boxed(5)), scripted()
    result, _ = await run(explorer, synthesizer, n=4, waves=[2], shortcut=True)
    assert len(explorer.calls) == 2 and synthesizer.calls == []
    assert result["boxed_answer"] == "5" and result["usage"]["total"]["calls"] == 2


async def test_budget_stops_new_explorers_and_synthesizes_over_the_finished():
    explorer = scripted(boxed(1, tokens=10), boxed(2, tokens=20), boxed(3), boxed(4))
    synthesizer = scripted(reply("\\boxed{2}"))
    result, events = await run(
        explorer, synthesizer, n=4, waves=[1, 2, 3], budget={"max_output_tokens": 25}
    )
    assert len(explorer.calls) == 2 and len(synthesizer.calls) == 1
    reached = result["decisions"]["budget_reached"]
    assert reached == {"spent": {"output_tokens": 30, "cost": 0.0}, "skipped": [2, 3]}
    assert named(events, "budget_reached")[0]["skipped"] == [2, 3]
    assert result["boxed_answer"] == "2"


async def test_a_cost_budget_stops_new_explorers():
    """At 1000 per million output tokens (nothing for input), the first wave's 10 tokens cost
    0.01, under the 0.025 budget, and the second wave's 20 more bring it to 0.03: stop."""
    explorer = scripted(boxed(1, tokens=10), boxed(2, tokens=20), boxed(3), boxed(4))
    priced = {"model": "explorer-model", "output_price_per_mtok": 1000.0}
    result, events = await run(
        explorer,
        scripted(reply("\\boxed{2}")),
        n=4,
        waves=[1, 2, 3],
        budget={"max_cost": 0.025},
        explorer=priced,
    )
    assert len(explorer.calls) == 2
    reached = result["decisions"]["budget_reached"]
    assert reached["skipped"] == [2, 3] and reached["spent"]["cost"] == pytest.approx(0.03)
    assert named(events, "budget_reached")[0]["skipped"] == [2, 3]
    assert result["usage"]["explore"]["cost"] == pytest.approx(0.03)


# -- reference filtering ---------------------------------------------------------------


async def test_top_references_passes_only_the_most_confident_answers():
    explorer = scripted(boxed(1, top=UNSURE), boxed(2, top=SURE), boxed(3, top=[-0.3, -2.0]))
    synthesizer = scripted(reply("\\boxed{2}"))
    result, _ = await run(
        explorer, synthesizer, n=3, confidence={"top_logprobs": 2}, top_references=2
    )
    prompt = synthesizer.calls[0][0]
    assert "\\boxed{2}" in prompt and "\\boxed{3}" in prompt and "\\boxed{1}" not in prompt
    assert result["decisions"]["references"] == [1, 2]


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"top_references": 2}, "set confidence"),
        ({"agreement": {"min_confidence": 1.0}}, "set confidence"),
        ({"budget": {"max_cost": 1.0}}, "set waves too"),
        ({"waves": [2, 2]}, "increasing path counts below n"),
        ({"waves": [4]}, "increasing path counts below n"),
        ({"waves": [1], "budget": {}}, "max_output_tokens or max_cost"),
        ({"agreement": {"min_share": 0.5}}, "greater than 0.5"),
        ({"confidence": {"top_logprobs": 21}}, "less than or equal to 20"),
        ({"synthesis_mode": "weighted_vote"}, "weighs each path's vote by its confidence"),
        ({"vote_first": {"min_share": 1.5}}, "less than or equal to 1"),
    ],
)
def test_policy_settings_that_cannot_work_are_refused_with_the_fix(fields, message):
    with pytest.raises(ValidationError, match=message):
        make_context(n=4, **fields)


async def test_decisions_are_events_on_the_run_span_and_confidence_on_the_path_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    explorer = scripted(
        boxed(5, top=SURE), boxed(6, top=UNSURE), boxed(6, top=SURE), boxed(6, top=SURE)
    )
    graph = build_graph(factory(explorer, scripted()), tracer_provider=provider)
    context = make_context(
        n=4, waves=[2], shortcut=True, agreement={"min_share": 0.7}, confidence={"top_logprobs": 2}
    )
    await graph.ainvoke({"question": "q?"}, context=context)
    spans = exporter.get_finished_spans()
    [run] = [s for s in spans if s.name == "invoke_workflow a2r"]
    assert [e.name for e in run.events] == ["a2r.wave_started", "a2r.shortcut_taken"]
    assert run.attributes["a2r.shortcut"] is True
    assert tuple(run.events[1].attributes["paths"]) == (1, 2, 3)
    calls = [s for s in spans if s.name.startswith("chat ")]
    assert len(calls) == 4
    means = sorted(c.attributes["a2r.confidence.mean"] for c in calls)
    assert means == pytest.approx([0.7, 2.505, 2.505, 2.505])


# -- how the references are laid out, and the select mode --------------------------------


def references_in(prompt):
    import re

    return re.findall(r"<reference\d+>\nso \\boxed\{(\w+)\}", prompt)


@pytest.mark.parametrize(
    ("references", "expected"),
    [
        ({}, ["7", "8", "7", "9", "8", "7"]),
        ({"order": "grouped"}, ["7", "7", "7", "8", "8", "9"]),
        ({"dedupe": True}, ["7", "8", "9"]),
        ({"order": "grouped", "dedupe": True}, ["7", "8", "9"]),
    ],
)
async def test_references_in_path_order_grouped_or_deduplicated(references, expected):
    synthesizer = scripted(reply("\\boxed{7}"))
    explorer = scripted(*[boxed(a) for a in ["7", "8", "7", "9", "8", "7"]])
    await run(explorer, synthesizer, n=6, references=references)
    assert references_in(synthesizer.calls[0][0]) == expected


async def test_the_tally_tells_how_many_references_share_each_answer():
    synthesizer = scripted(reply("\\boxed{7}"))
    explorer = scripted(boxed(8), boxed(7), boxed("7.0"), reply("no box"))
    await run(explorer, synthesizer, n=4, references={"tally": True})
    assert (
        synthesizer.calls[0][0]
        .rstrip()
        .endswith(
            "Final answers of the references: 7 (2 of 4), 8 (1 of 4), no boxed answer (1 of 4)."
        )
    )


@pytest.mark.parametrize(
    ("named", "selected", "answer"),
    [("2", 1, "9"), ("#1", 0, "8"), ("7", None, "9"), (None, None, "9")],
)
async def test_select_mode_answers_with_the_named_reference(named, selected, answer):
    explorer = scripted(boxed(8), boxed(9, tokens=11), boxed(9, tokens=12))
    selector = scripted(reply(f"The second is right: \\boxed{{{named}}}" if named else "unsure"))
    result, _ = await run(
        explorer, selector, n=3, synthesis_mode="select", references={"dedupe": True}
    )
    assert "Candidate solutions:" in selector.calls[0][0]  # the selector's prompt
    assert references_in(selector.calls[0][0]) == ["8", "9"]
    assert result["decisions"]["selected"] == selected
    # no valid reference named: the most common answer of the usable paths
    assert result["boxed_answer"] == answer
    assert result["usage"]["synthesize"]["calls"] == 1


def test_a_streamed_select_run_sends_the_selectors_text_as_reasoning(monkeypatch):
    """Streaming front ends (a2r serve, the OpenAI endpoint) send a selector's text as
    reasoning: the answer is the chosen reference's, sent once the run ends."""
    from a2r_graph.serving.runners import Preset, reasoning_only, token_of
    from tests.fakes import fake_deployment

    fake_deployment(monkeypatch)
    assert reasoning_only(Preset("a2r", "a2r", {"synthesis_mode": "select"}), {})
    assert reasoning_only(Preset("a2r", "a2r", {}), {"synthesis_mode": "select"})
    assert not reasoning_only(Preset("a2r", "a2r", {}), {})
    assert not reasoning_only(Preset("a2r", "a2r", {}), {"n": 0})  # the run reports that itself
    [token] = token_of("pick \\boxed{2}", {}, all_reasoning=True)
    assert token.reasoning and token.text == "pick \\boxed{2}"


# -- the vote modes ----------------------------------------------------------------------


async def test_vote_answers_with_the_most_common_answer_and_never_calls_the_synthesizer():
    """Catches: vote calling the synthesizer anyway; equivalent answers counted apart; the
    usage claiming a synthesis; a vote run not ending finished (asked again, it would vote
    on stale paths)."""
    explorer = scripted(boxed(8), boxed("7.0", tokens=20), boxed(7, tokens=30), reply("no box"))
    synthesizer = scripted()  # any call would fail
    result, events = await run(explorer, synthesizer, n=4, synthesis_mode="vote")
    assert synthesizer.calls == [] and result["synthesis"] is None
    assert result["boxed_answer"] == "7.0" and result["answer"] == "so \\boxed{7.0}"
    aggregation = result["decisions"]["aggregation"]
    assert aggregation["by"] == "vote"
    assert aggregation["vote"]["paths"] == [1, 2] and aggregation["vote"]["tied"] is False
    assert aggregation["vote"]["tally"] == {"7.0": 2.0, "8": 1.0}
    assert "holds 2 of 4 usable paths" in aggregation["why"]
    assert result["usage"]["synthesize"]["calls"] == 0
    assert result["usage"]["total"]["output_tokens"] == 10 + 20 + 30 + 20
    [event] = named(events, "voted")
    assert event["by"] == "vote" and event["paths"] == [1, 2]


async def test_a_tied_vote_takes_the_answer_seen_first_and_says_so():
    result, _ = await run(scripted(boxed(8), boxed(7), boxed(7), boxed(8)), scripted(), n=4,
                          synthesis_mode="vote")  # fmt: skip
    assert result["boxed_answer"] == "8"
    assert result["decisions"]["aggregation"]["vote"]["tied"] is True
    assert "tied" in result["decisions"]["aggregation"]["why"]


async def test_a_vote_with_no_final_answer_answers_nothing_rather_than_inventing_one():
    result, _ = await run(scripted(reply("a"), reply("b")), scripted(), n=2, synthesis_mode="vote")
    assert result["boxed_answer"] is None and result["answer"] == ""
    assert result["decisions"]["aggregation"]["vote"] is None
    assert "none of the 2 usable paths" in result["decisions"]["aggregation"]["why"]


async def test_a_vote_over_too_few_usable_paths_fails_like_a_synthesis_would():
    import httpx
    import openai

    from a2r_graph.errors import NotEnoughPathsError

    down = openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))

    with pytest.raises(NotEnoughPathsError, match="min_paths=2"):
        await run(scripted(boxed(7), down), scripted(), n=2, min_paths=2, max_attempts=1,
                  synthesis_mode="vote")  # fmt: skip


async def test_weighted_vote_lets_sure_paths_outvote_more_unsure_ones():
    """DeepConf: two sure 8s outweigh three unsure 7s (a plain vote would say 7)."""
    explorer = scripted(
        boxed(7, top=UNSURE), boxed(8, top=SURE), boxed(7, top=UNSURE), boxed(8, top=SURE),
        boxed(7, top=UNSURE),
    )  # fmt: skip
    confidence = {"top_logprobs": 2, "measure": "mean"}
    result, _ = await run(
        explorer, scripted(), n=5, synthesis_mode="weighted_vote", confidence=confidence
    )
    aggregation = result["decisions"]["aggregation"]
    assert result["boxed_answer"] == "8" and aggregation["by"] == "weighted_vote"
    assert aggregation["vote"]["tally"] == {"8": pytest.approx(5.01), "7": pytest.approx(2.1)}


@pytest.mark.parametrize(
    ("answers", "rule", "synthesized", "why"),
    [
        (["7", "7", "8", "9"], {}, False, "holds 2 of 4"),  # a unique leader with 2 paths
        (["7", "7", "8", "8"], {}, True, "tied"),  # a tie: the synthesizer decides
        (["7", "8", "9", "6"], {}, True, "holds 1 of 4"),  # scattered: below min_paths
        (["7", "7", "8", "9"], {"min_share": 0.75}, True, ">= 75%"),
        (["7", "7", "7", "9"], {"min_share": 0.75}, False, "holds 3 of 4"),
        (["7", "8", "9", "6"], {"min_paths": 1}, True, "tied"),  # four 1-path groups tie
    ],
)
async def test_vote_first_synthesizes_exactly_when_no_answer_leads_alone(
    answers, rule, synthesized, why
):
    """Catches: a tie decided by the vote (the old shortcut took the first group), the
    synthesizer called when the vote decided, the rule's settings ignored."""
    synthesizer = scripted(reply("\\boxed{42}"))
    result, _ = await run(
        scripted(*[boxed(a) for a in answers]),
        synthesizer,
        n=4,
        synthesis_mode="vote_first",
        vote_first=rule,
    )
    aggregation = result["decisions"]["aggregation"]
    assert len(synthesizer.calls) == int(synthesized)
    assert aggregation["by"] == ("synthesizer" if synthesized else "vote")
    assert result["boxed_answer"] == ("42" if synthesized else answers[0])
    assert why in aggregation["why"]
    assert (result["synthesis"] is None) is not synthesized


async def test_the_run_span_and_the_runs_metric_name_the_aggregator():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    explorer = scripted(boxed(7), boxed(7), boxed(7), boxed(8))
    graph = build_graph(
        factory(explorer, scripted(reply("\\boxed{8}"))),
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    await graph.ainvoke({"question": "q?"}, context=make_context(n=2, synthesis_mode="vote"))
    await graph.ainvoke({"question": "q?"}, context=make_context(n=2))
    runs = [s for s in exporter.get_finished_spans() if s.name == "invoke_workflow a2r"]
    assert [r.attributes["a2r.aggregator"] for r in runs] == ["vote", "synthesizer"]
    counted = {
        dict(point.attributes).get("a2r.aggregator"): point.value
        for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        if metric.name == "a2r.runs"
        for point in metric.data.data_points
    }
    assert counted == {"vote": 1, "synthesizer": 1}
