"""Span tree and attributes, read back from the OpenTelemetry SDK's in-memory exporter."""

import logging
from uuid import uuid4

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from a2r_graph import ModelRequestError, build_graph
from a2r_graph.chat_models import ChatVLLM
from a2r_graph.tracing import CAPTURE_CONTENT, A2RTracer
from tests.fakes import factory, make_context, reply, scripted

PRICES = {"input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0}


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


def traced_graph(exporter, explorer, synthesizer):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return build_graph(factory(explorer, synthesizer), tracer_provider=provider)


def context(**overrides):
    return make_context(
        explorer={"model": "explorer-model", "base_url": "http://gpu-a:8001/v1", **PRICES},
        synthesizer={"model": "synthesizer-model", "base_url": "http://gpu-b:8002/v1", **PRICES},
        **overrides,
    )


async def run_traced(exporter, n=3):
    explorer = scripted(
        *[reply(f"\\boxed{{{i}}}", input_tokens=100, output_tokens=10 * (i + 1)) for i in range(n)]
    )
    synthesizer = scripted(reply("\\boxed{1}", input_tokens=500, output_tokens=50))
    graph = traced_graph(exporter, explorer, synthesizer)
    result = await graph.ainvoke({"question": "secret question?"}, context=context(n=n))
    return result, {span.name: span for span in exporter.get_finished_spans()}


async def test_span_tree_run_stages_and_model_calls(exporter):
    _, by_name = await run_traced(exporter, n=3)
    spans = exporter.get_finished_spans()
    run = by_name["invoke_workflow a2r"]
    stages = {s.name: s for s in spans if s.parent and s.parent.span_id == run.context.span_id}
    assert set(stages) == {"explore", "reduce", "synthesize"}
    calls = [s for s in spans if s.name.startswith("chat ")]
    explore_calls = [c for c in calls if c.parent.span_id == stages["explore"].context.span_id]
    synth_calls = [c for c in calls if c.parent.span_id == stages["synthesize"].context.span_id]
    assert len(explore_calls) == 3 and len(synth_calls) == 1 and len(calls) == 4
    assert {s.context.trace_id for s in spans} == {run.context.trace_id}
    assert run.parent is None
    # the explore stage covers its calls even though they ran concurrently
    assert stages["explore"].start_time <= min(c.start_time for c in explore_calls)
    assert stages["explore"].end_time >= max(c.end_time for c in explore_calls)
    assert stages["explore"].end_time <= stages["reduce"].start_time


async def test_model_call_spans_carry_genai_attributes_and_cost(exporter):
    result, _ = await run_traced(exporter, n=2)
    calls = sorted(
        (s for s in exporter.get_finished_spans() if s.name.startswith("chat ")),
        key=lambda s: (s.attributes["a2r.stage"], s.attributes.get("a2r.path.index", -1)),
    )
    first = calls[0]
    assert first.kind == SpanKind.CLIENT
    assert first.name == "chat explorer-model"
    attrs = dict(first.attributes)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "vllm"
    assert attrs["gen_ai.request.model"] == "explorer-model"
    assert attrs["gen_ai.request.temperature"] == 0.6
    assert attrs["gen_ai.request.max_tokens"] == 8192
    assert (attrs["server.address"], attrs["server.port"]) == ("gpu-a", 8001)
    assert attrs["a2r.stage"] == "explorer"
    assert {c.attributes.get("a2r.path.index") for c in calls[:2]} == {0, 1}
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    usage = result["paths"][attrs["a2r.path.index"]]["usage"]
    assert attrs["gen_ai.usage.input_tokens"] == usage["input_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert attrs["a2r.cost"] == pytest.approx(usage["cost"])
    synth = calls[-1].attributes
    assert synth["a2r.stage"] == "synthesizer" and "a2r.path.index" not in synth
    assert synth["a2r.cost"] == pytest.approx((500 * 1 + 50 * 2) / 1e6)


async def test_stage_and_run_spans_carry_token_sums_and_cost(exporter):
    result, by_name = await run_traced(exporter, n=3)
    explore = by_name["explore"].attributes
    assert explore["a2r.usage.calls"] == 3
    assert explore["a2r.usage.input_tokens"] == 300
    assert explore["a2r.usage.output_tokens"] == 10 + 20 + 30
    assert explore["a2r.cost"] == pytest.approx((300 * 1 + 60 * 2) / 1e6)
    assert by_name["synthesize"].attributes["a2r.usage.output_tokens"] == 50
    run = by_name["invoke_workflow a2r"].attributes
    assert run["a2r.usage.input_tokens"] == result["usage"]["total"]["input_tokens"] == 800
    assert run["a2r.cost"] == pytest.approx(result["usage"]["total"]["cost"])
    assert run["a2r.n"] == 3


async def test_no_prompt_or_completion_text_unless_opted_in(exporter, monkeypatch):
    monkeypatch.delenv(CAPTURE_CONTENT, raising=False)
    await run_traced(exporter, n=1)
    for span in exporter.get_finished_spans():
        assert not any("secret question" in str(v) for v in span.attributes.values())
        assert not any(k.startswith(("gen_ai.input", "gen_ai.output")) for k in span.attributes)

    exporter.clear()
    monkeypatch.setenv(CAPTURE_CONTENT, "true")
    await run_traced(exporter, n=1)
    call = next(s for s in exporter.get_finished_spans() if s.name == "chat explorer-model")
    assert "secret question?" in call.attributes["gen_ai.input.messages"]
    assert "\\\\boxed{0}" in call.attributes["gen_ai.output.messages"]


async def test_failed_attempts_and_failed_runs_are_error_spans(exporter):
    request = httpx.Request("POST", "http://gpu-a:8001/v1/chat/completions")
    body = {"message": "The model `x` does not exist."}
    not_found = openai.NotFoundError(
        "nope", response=httpx.Response(404, request=request, json=body), body=body
    )
    graph = traced_graph(
        exporter, scripted(openai.APIConnectionError(request=request), not_found), scripted()
    )
    with pytest.raises(ModelRequestError):
        await graph.ainvoke({"question": "q"}, context=context(n=1))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    calls = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert len(calls) == 2  # the retried connection error, then the 404
    assert all(c.status.status_code == StatusCode.ERROR for c in calls)
    run = spans["invoke_workflow a2r"]
    assert run.status.status_code == StatusCode.ERROR
    assert "ModelRequestError" in run.status.description
    assert spans["explore"].end_time is not None


PROBE = (
    "import a2r_graph.telemetry; a2r_graph.telemetry.configure_from_env(); "
    "from opentelemetry import trace; print(type(trace.get_tracer_provider()).__name__)"
)


def provider_after_import(**env):
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env},
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode, done.stdout.strip(), done.stderr


def test_no_otel_environment_means_no_provider_and_no_errors():
    assert provider_after_import() == (0, "ProxyTracerProvider", "")


def test_otlp_endpoint_in_the_environment_installs_an_exporting_provider():
    returncode, provider, _ = provider_after_import(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318", OTEL_SERVICE_NAME="x"
    )
    assert (returncode, provider) == (0, "TracerProvider")
    assert (
        provider_after_import(
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318", OTEL_TRACES_EXPORTER="none"
        )[1]
        == "ProxyTracerProvider"
    )


def test_unsupported_otlp_protocol_is_a_clear_error():
    returncode, _, stderr = provider_after_import(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
    )
    assert returncode != 0
    assert "a2r-graph exports OTLP over http/protobuf" in stderr


# -- malformed replies: error spans, never an exception in (or logged by) the callbacks --------


def open_call(tracer):
    """Start a graph run, its explore stage and one model call on ``tracer``; the call's id."""
    run, node, call = uuid4(), uuid4(), uuid4()
    tracer.on_chain_start({}, {}, run_id=run, name="a2r")
    tracer.on_chain_start(
        {}, {}, run_id=node, parent_run_id=run, name="explore",
        metadata={"langgraph_node": "explore"},
    )  # fmt: skip
    tracer.on_chat_model_start(
        {}, [[HumanMessage("q")]], run_id=call, parent_run_id=node,
        metadata={"a2r.model": "explorer-model", "a2r.stage": "explorer", **PRICES},
    )  # fmt: skip
    return call


def odd_usage_message():
    """What ChatOpenAI builds from `"usage": {"prompt_tokens": "n/a", ...}` (set after
    construction, so pydantic never checked it)."""
    message = AIMessage("x")
    message.usage_metadata = {"input_tokens": "n/a", "output_tokens": None, "total_tokens": 0}
    return message


@pytest.mark.parametrize(
    "response",
    [
        LLMResult(generations=[[]]),  # a reply with empty `choices` (the IndexError)
        LLMResult(generations=[]),
        LLMResult(generations=[[ChatGeneration(message=odd_usage_message())]]),
        LLMResult(generations=[[Generation(text="x", generation_info={"finish_reason": 3})]]),
    ],
)
def test_the_tracer_records_an_odd_reply_without_raising(exporter, response):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = A2RTracer(provider)
    tracer.on_llm_end(response, run_id=open_call(tracer))
    (call,) = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert "gen_ai.usage.input_tokens" not in call.attributes and "a2r.cost" not in call.attributes
    assert "gen_ai.response.finish_reasons" not in call.attributes


async def test_malformed_replies_are_error_spans_never_callback_errors(exporter, caplog):
    answered = []

    def explorer_server(request):  # the first path is answered, then only `"choices": []`
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        choices = [] if answered else [
            {"index": 0, "message": {"role": "assistant", "content": "\\boxed{1}"}}
        ]  # fmt: skip
        answered.append(request)
        body = {"id": "c", "object": "chat.completion", "created": 0, "model": "explorer-model",
                "choices": choices, "usage": usage}  # fmt: skip
        return httpx.Response(200, json=body)

    def chat_model(stage, timeout_s):
        handler = explorer_server if stage.model == "explorer-model" else None
        return ChatVLLM(
            model=stage.model, base_url=stage.url, api_key="EMPTY", max_retries=0,
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        ) if handler else scripted(reply("\\boxed{1}"))  # fmt: skip

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    graph = build_graph(chat_model, tracer_provider=provider)
    with caplog.at_level(logging.DEBUG):
        result = await graph.ainvoke({"question": "q"}, context=context(n=2, max_attempts=2))
    assert [p["error"] is None for p in result["paths"]].count(True) == 1
    calls = [s for s in exporter.get_finished_spans() if s.name == "chat explorer-model"]
    failed = [c for c in calls if c.status.status_code == StatusCode.ERROR]
    assert len(calls) == 3 and len(failed) == 2  # one answered, two malformed attempts
    assert {c.attributes["error.type"] for c in failed} == {"MalformedReplyError"}
    assert "the reply has no `choices`" in failed[0].status.description
    assert "Error in A2RTracer" not in caplog.text and "IndexError" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
