"""OpenTelemetry spans for A2R runs (GenAI semantic conventions), from LangChain callbacks.

One run gives this tree, however the explorer branches interleave:

    invoke_workflow a2r                       run: n, token sums, cost
      explore                                 stage: its calls' token sums and cost
        chat {model}  (CLIENT) x N            one per model request, retries included
      reduce
      synthesize
        chat {model}  (CLIENT)

Callbacks (not code in the nodes) carry the spans, so they nest correctly wherever the
graph runs: ``ainvoke``, LangGraph Server, a subgraph or a tool. Spans go to the global
TracerProvider; ``configure_from_env`` installs one exporting OTLP when the standard
``OTEL_EXPORTER_OTLP_*`` variables ask for it. Prompt and completion text are recorded only
when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard, cast
from urllib.parse import urlsplit
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from a2r_graph.confidence import path_confidence, token_confidences
from a2r_graph.context import token_cost
from a2r_graph.metrics import RunMetrics
from a2r_graph.stages import EXPLORE, GRAPH, STAGES, USAGE_KEYS
from a2r_graph.state import stage_usage

NODES = frozenset(stage.node for stage in STAGES)
PROVIDER = "vllm"
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# OpenInference's kind (Phoenix and other OpenInference backends show spans by it; they
# derive "LLM" for the chat spans from gen_ai.operation.name themselves).
OPENINFERENCE_KIND = "openinference.span.kind"


def configure_from_env() -> bool:
    """Install an OTLP-exporting TracerProvider when the OTel environment asks for one.

    Does nothing (and costs nothing) unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, ``OTEL_SDK_DISABLED`` is not true,
    ``OTEL_TRACES_EXPORTER`` is not ``none``, and no SDK provider is installed yet (an
    application's own setup wins). Exports OTLP over HTTP/protobuf.
    """
    env = os.environ.get
    wanted = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env("OTEL_EXPORTER_OTLP_ENDPOINT")
    disabled = env("OTEL_SDK_DISABLED", "").lower() == "true"
    if not wanted or disabled or env("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol not in (None, "", "http/protobuf"):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL={protocol!r}: a2r-graph exports OTLP over "
            "http/protobuf; set it to http/protobuf and point the endpoint at the collector's "
            "HTTP port (4318), or install your own TracerProvider before importing a2r_graph"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if isinstance(trace.get_tracer_provider(), SdkTracerProvider):
        return False
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    provider = SdkTracerProvider(resource=Resource.create({"service.name": "a2r-graph"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def capture_content() -> bool:
    return os.environ.get(CAPTURE_CONTENT, "").strip().lower() == "true"


@dataclass
class _Run:
    """One A2R graph run's open spans."""

    span: Span
    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, Span] = field(default_factory=dict)
    explore_paths: list[Any] = field(default_factory=list)
    explore_end_ns: int | None = None


@dataclass
class _Chain:
    """A graph run or one of its descendant chains (node tasks and what runs inside them)."""

    run: UUID
    """The graph run it belongs to."""
    span: Span | None
    """The span its children nest under (none: outside every stage)."""
    stage: str | None = None
    """The stage a node task opened (its span is the stage's)."""


@dataclass
class _Call:
    span: Span
    input_price_per_mtok: float
    output_price_per_mtok: float
    confidence_windows: tuple[int, int] | None = None
    """(group_size, tail_tokens) when the call asked for logprobs."""
    metric_attributes: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def prices(self) -> tuple[float, float]:
        return self.input_price_per_mtok, self.output_price_per_mtok


class A2RTracer(BaseCallbackHandler):
    """LangChain callback handler that turns A2R runs into OpenTelemetry spans.

    It keeps, per callback run id of a graph run and its descendants, a ``_Chain``: which
    graph run it belongs to and the span its children nest under; and per model call its
    ``_Call``.
    """

    run_inline = True  # called in the caller's task: no thread hop, ordered with the run

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._metrics = RunMetrics(meter_provider)
        self._runs: dict[UUID, _Run] = {}  # graph run id -> its spans
        self._chains: dict[UUID, _Chain] = {}  # graph run or descendant id -> where it nests
        self._calls: dict[UUID, _Call] = {}  # model call run id -> its span

    @property
    def _tracer(self) -> trace.Tracer:
        return trace.get_tracer("a2r_graph", tracer_provider=self._tracer_provider)

    # -- chains: the graph run and its nodes ----------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name")
        parent = self._chains.get(parent_run_id) if parent_run_id else None
        if parent is None:
            if name == GRAPH:
                self._start_run(run_id, metadata or {})
            return
        graph_run = parent.run
        is_node_task = parent_run_id == graph_run and (metadata or {}).get("langgraph_node") == name
        if is_node_task and name in NODES:
            span = self._start_stage(self._runs[graph_run], name)
            self._chains[run_id] = _Chain(graph_run, span, stage=name)
        else:
            self._chains[run_id] = _Chain(graph_run, parent.span)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._chain_done(run_id, outputs, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._chain_done(run_id, None, error)

    def _chain_done(self, run_id: UUID, outputs: Any, error: BaseException | None) -> None:
        if run_id in self._runs:
            self._end_run(run_id, outputs, error)
            return
        chain = self._chains.pop(run_id, None)
        if chain is None or chain.span is None or chain.stage is None:
            return
        span, stage = chain.span, chain.stage
        if error is not None:
            _record_error(span, error)
        run = self._runs[chain.run]
        if stage == EXPLORE.node:  # N tasks share the stage span: it ends when reduce starts
            run.explore_paths.extend((outputs or {}).get("paths", []))
            run.explore_end_ns = time.time_ns()
            return
        if stage in USAGE_KEYS and stage in (outputs or {}).get("usage", {}):
            _set_usage(span, outputs["usage"][stage])
        span.end()

    # -- model calls --------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        chain = self._chains.get(parent_run_id) if parent_run_id else None
        parent = chain.span if chain else None
        if parent is None:
            return
        meta, params = metadata or {}, invocation_params or {}
        model = meta.get("a2r.model") or params.get("model") or params.get("model_name")
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": model,
            "a2r.stage": meta.get("a2r.stage"),
            "a2r.path.index": meta.get("a2r.path.index"),
        }
        for param in ("temperature", "top_p", "max_tokens", "seed"):
            attributes[f"gen_ai.request.{param}"] = params.get(param)
        if server := meta.get("a2r.base_url"):
            url = urlsplit(server)
            attributes["server.address"] = url.hostname
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        if capture_content():
            attributes["gen_ai.input.messages"] = json.dumps(
                [_message_json(m) for m in messages[0]], ensure_ascii=False
            )
        span = self._tracer.start_span(
            f"chat {model}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={k: v for k, v in attributes.items() if v is not None},
        )
        group_size, tail = (
            meta.get("a2r.confidence.group_size"),
            meta.get("a2r.confidence.tail_tokens"),
        )
        self._calls[run_id] = _Call(
            span,
            meta.get("a2r.input_price_per_mtok", 0.0),
            meta.get("a2r.output_price_per_mtok", 0.0),
            (group_size, tail) if group_size is not None and tail is not None else None,
            {
                key: attributes[key]
                for key in (
                    "gen_ai.operation.name",
                    "gen_ai.provider.name",
                    "gen_ai.request.model",
                    "a2r.stage",
                )
            },
        )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        tokens: tuple[int, int] | None = None
        try:
            tokens = self._record_reply(call, response)
        finally:
            call.span.end()
            cost = 0.0 if tokens is None else token_cost(*tokens, *call.prices)
            self._metrics.call(
                call.metric_attributes, time.perf_counter() - call.started, tokens, cost
            )

    @staticmethod
    def _record_reply(call: _Call, response: LLMResult) -> tuple[int, int] | None:
        """The reply's model, finish reason, usage and cost, as far as the reply has them: a
        malformed one (no generation, token counts that are not integers) records less, and
        never raises from the callback. Returns the (input, output) tokens, if readable."""
        span = call.span
        generations = response.generations[0] if response.generations else []
        if not generations:
            return None
        counted: tuple[int, int] | None = None
        generation = generations[0]
        message = getattr(generation, "message", None)
        metadata = getattr(message, "response_metadata", None)
        info = {
            **(generation.generation_info or {}),
            **(metadata if isinstance(metadata, dict) else {}),
        }
        if isinstance(response_model := info.get("model_name"), str) and response_model:
            span.set_attribute("gen_ai.response.model", response_model)
        if isinstance(finish_reason := info.get("finish_reason"), str) and finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        usage = getattr(message, "usage_metadata", None)
        if isinstance(usage, dict):
            tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
            if _is_count(tokens_in) and _is_count(tokens_out):
                counted = (tokens_in, tokens_out)
                span.set_attribute("gen_ai.usage.input_tokens", tokens_in)
                span.set_attribute("gen_ai.usage.output_tokens", tokens_out)
                span.set_attribute("a2r.cost", token_cost(*counted, *call.prices))
        if call.confidence_windows and (
            measures := path_confidence(
                token_confidences(info.get("logprobs")), *call.confidence_windows
            )
        ):
            for measure, value in measures.items():
                span.set_attribute(f"a2r.confidence.{measure}", cast(float, value))
        if capture_content() and isinstance(message, BaseMessage):
            output = [_message_json(message)]
            span.set_attribute("gen_ai.output.messages", json.dumps(output, ensure_ascii=False))
        return counted

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is not None:
            _record_error(call.span, error)
            call.span.end()
            seconds = time.perf_counter() - call.started
            self._metrics.call(call.metric_attributes, seconds, None, 0.0, error)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A policy decision (``nodes.announce``): an event on the run's span."""
        chain = self._chains.get(run_id)
        run = self._runs.get(chain.run) if chain else None
        if run is None or not name.startswith("a2r."):
            return
        run.span.add_event(name, {k: _attribute(v) for k, v in (data or {}).items()})
        if name == "a2r.shortcut_taken":
            run.span.set_attribute("a2r.shortcut", True)
        elif name == "a2r.budget_reached":
            run.span.set_attribute("a2r.budget_reached", True)

    # -- the run and its stages ---------------------------------------------------------
    def _start_run(self, run_id: UUID, metadata: dict[str, Any]) -> None:
        span = self._tracer.start_span(
            f"invoke_workflow {GRAPH}",
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "a2r.graph": GRAPH,
                OPENINFERENCE_KIND: "CHAIN",
            },
        )
        if thread_id := metadata.get("thread_id"):
            span.set_attribute("a2r.thread_id", str(thread_id))
        self._runs[run_id] = _Run(span)
        self._chains[run_id] = _Chain(run_id, span)

    def _start_stage(self, run: _Run, stage: str) -> Span:
        if stage == EXPLORE.node and stage in run.stages:
            return run.stages[stage]  # the N explore tasks share one stage span
        self._end_explore(run)
        span = self._tracer.start_span(
            stage,
            context=trace.set_span_in_context(run.span),
            attributes={"a2r.stage": stage, OPENINFERENCE_KIND: "CHAIN"},
        )
        run.stages[stage] = span
        return span

    def _end_explore(self, run: _Run) -> None:
        span = run.stages.get(EXPLORE.node)
        if span is not None and span.is_recording():
            _set_usage(span, stage_usage(run.explore_paths))
            span.end(end_time=run.explore_end_ns)

    def _end_run(self, run_id: UUID, outputs: Any, error: BaseException | None) -> None:
        run = self._runs.pop(run_id)
        self._chains.pop(run_id, None)
        self._end_explore(run)
        for span in run.stages.values():
            if span.is_recording():
                if error is not None:
                    _record_error(span, error)
                span.end()
        usage = outputs.get("usage", {}) if isinstance(outputs, dict) else {}
        if "total" in usage:
            _set_usage(run.span, usage["total"])
            run.span.set_attribute("a2r.n", len(outputs.get("paths", [])))
        if error is not None:
            _record_error(run.span, error)
        outputs = outputs if isinstance(outputs, dict) else {}
        decisions = outputs.get("decisions") or {}
        outcome = "error" if error is not None else "answered"
        if error is None and decisions.get("shortcut"):
            outcome = "shortcut"
        aggregator = None if error is not None else (decisions.get("aggregation") or {}).get("by")
        if aggregator:
            run.span.set_attribute("a2r.aggregator", aggregator)
        run.span.end()
        failed = sum(1 for path in outputs.get("paths", []) if path.get("error"))
        self._metrics.run(outcome, time.perf_counter() - run.started, failed, aggregator)


def _attribute(value: Any) -> Any:
    """``value`` as an OpenTelemetry attribute value (scalars, homogeneous lists; JSON else)."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return value
    return json.dumps(value, default=str)


def _is_count(tokens: Any) -> TypeGuard[int]:
    return isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0


def _set_usage(span: Span, usage: Mapping[str, Any]) -> None:
    span.set_attribute("a2r.usage.calls", usage["calls"])
    span.set_attribute("a2r.usage.input_tokens", usage["input_tokens"])
    span.set_attribute("a2r.usage.output_tokens", usage["output_tokens"])
    span.set_attribute("a2r.cost", usage["cost"])


def _record_error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.set_attribute("error.type", type(error).__qualname__)


def _message_json(message: BaseMessage) -> dict[str, Any]:
    role = {"human": "user", "ai": "assistant"}.get(message.type, message.type)
    return {"role": role, "parts": [{"type": "text", "content": message.text}]}
