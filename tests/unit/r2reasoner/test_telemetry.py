"""R2-Reasoner's spans and metrics, read back from the OpenTelemetry SDK's in-memory exporter
and reader: one client span per model call naming its tier and step, one span per subtask and
one for the result, and GenAI metrics by tier that add up to the run's usage."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from a2r_graph.r2reasoner.graph import build_reasoner_graph
from tests.fakes import reply
from tests.metric_points import points, total
from tests.r2reasoner_fakes import QUESTION, SURE, UNSURE, answers, context, plan, serve, step_of


def small(prompt: str) -> AIMessage:
    step = step_of(prompt)
    return reply(f"\\boxed{{{step}}}", logprobs=UNSURE if step == 2 else SURE)


async def test_spans_name_each_calls_tier_and_step_and_metrics_by_tier_add_up():
    """Catches: a call missing from traces or metrics (the escalated attempt, the plan or the
    summary), spans that do not say which tier and step a call was, a subtask span without
    its escalations, a result span whose cost is not the run's, or metrics that lump the
    tiers together (a dashboard's cost per tier would disagree with the runs)."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    _, factory = serve(plan((1, []), (2, [1])), small, answers({2: "27"}))
    graph = build_reasoner_graph(
        factory,
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    result = await graph.ainvoke({"question": QUESTION}, context=context(escalate_below=3.0))

    spans = exporter.get_finished_spans()
    calls = [s for s in spans if s.kind == SpanKind.CLIENT]
    tier_and_step = sorted(
        (s.attributes["a2r.stage"], s.attributes["a2r.r2reasoner.step"]) for s in calls
    )
    assert tier_and_step == [
        ("large", "plan"), ("large", "subtask 2"), ("large", "summary"),
        ("small", "subtask 1"), ("small", "subtask 2"),
    ]  # fmt: skip
    for span in calls:
        assert span.attributes["gen_ai.request.model"] == f"{span.attributes['a2r.stage']}-model"
    subtasks = {
        s.attributes["a2r.r2reasoner.subtask"]: (
            s.attributes["a2r.r2reasoner.tier"],
            s.attributes["a2r.r2reasoner.escalations"],
        )
        for s in spans
        if s.name == "r2reasoner.subtask"
    }
    assert subtasks == {1: ("small", 0), 2: ("large", 1)}
    [run] = [s for s in spans if s.name == "r2reasoner.result"]
    assert run.attributes["a2r.r2reasoner.subtasks"] == 2
    assert run.attributes["a2r.r2reasoner.escalations"] == result["escalations"] == 1
    assert run.attributes["a2r.cost"] == pytest.approx(result["usage"]["total"]["cost"])

    data = points(reader)
    for tier in ("small", "large"):
        usage = result["usage"][tier]
        for kind, key in (("input", "input_tokens"), ("output", "output_tokens")):
            labels = {"a2r.stage": tier, "gen_ai.token.type": kind}
            assert total(data, "gen_ai.client.token.usage", **labels) == usage[key] > 0
        assert total(data, "a2r.cost", **{"a2r.stage": tier}) == pytest.approx(usage["cost"])
