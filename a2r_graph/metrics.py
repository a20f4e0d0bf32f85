"""OpenTelemetry metrics for A2R runs: the GenAI semantic conventions' client metrics per model
call, plus runs, explorer failures, shortcuts and cost per stage.

Recorded by the tracer callback (``a2r_graph.tracing``) from the same events as the spans, into
the global MeterProvider (or the one passed to ``build_graph``). ``configure_from_env`` installs
one from the standard variables: ``OTEL_METRICS_EXPORTER`` (``otlp``, ``prometheus``, both
comma-separated, or ``none``; default ``otlp`` when an OTLP endpoint is set), with
``OTEL_EXPORTER_PROMETHEUS_HOST`` / ``_PORT`` (default localhost:9464) for the scrape endpoint.

- ``gen_ai.client.token.usage`` (histogram, tokens): gen_ai.token.type (input/output),
  gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model, a2r.stage;
- ``gen_ai.client.operation.duration`` (histogram, s): the same but the token type, and
  error.type on failed calls;
- ``a2r.runs`` (counter): a2r.outcome (answered, shortcut, error) and, on answered runs,
  a2r.aggregator (synthesizer, selector, shortcut, vote, weighted_vote);
- ``a2r.run.duration`` (histogram, s): a2r.outcome;
- ``a2r.explorer.failures`` (counter): unusable paths of finished runs;
- ``a2r.cost`` (counter, the stages' currency): a2r.stage (explorer, synthesizer).

docs/tracing.md lists their Prometheus names and a dashboard's queries.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

# The GenAI conventions' advisory bucket boundaries.
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92, 163.84, 327.68, 655.36]  # fmt: skip
_prometheus_started = False


class RunMetrics:
    """The instruments, on ``meter_provider`` (default: the global one)."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter("a2r_graph", meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.runs = meter.create_counter("a2r.runs", unit="{run}", description="A2R runs ended.")
        self.run_duration = meter.create_histogram(
            "a2r.run.duration",
            unit="s",
            description="Wall time of A2R runs.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.explorer_failures = meter.create_counter(
            "a2r.explorer.failures", unit="{path}", description="Unusable explorer paths."
        )
        self.cost = meter.create_counter(
            "a2r.cost", description="Cost of model calls at the stages' configured prices."
        )

    def call(
        self,
        attributes: dict[str, Any],
        seconds: float,
        tokens: tuple[int, int] | None,
        cost: float,
        error: BaseException | None = None,
    ) -> None:
        """One model call: its duration, and its tokens and cost when the reply had usage."""
        attributes = {k: v for k, v in attributes.items() if v is not None}
        failed = {"error.type": type(error).__qualname__} if error is not None else {}
        self.operation_duration.record(seconds, attributes | failed)
        if tokens is not None:
            for kind, count in zip(("input", "output"), tokens, strict=True):
                self.token_usage.record(count, attributes | {"gen_ai.token.type": kind})
            if stage := attributes.get("a2r.stage"):
                self.cost.add(cost, {"a2r.stage": stage})

    def run(
        self, outcome: str, seconds: float, failed_paths: int, aggregator: str | None = None
    ) -> None:
        self.runs.add(
            1, {"a2r.outcome": outcome} | ({"a2r.aggregator": aggregator} if aggregator else {})
        )
        self.run_duration.record(seconds, {"a2r.outcome": outcome})
        if failed_paths:
            self.explorer_failures.add(failed_paths)


def configure_from_env() -> bool:
    """Install a MeterProvider exporting what ``OTEL_METRICS_EXPORTER`` asks for (see the
    module's doc); nothing when it asks for none, the SDK is disabled, or an application
    installed its own provider first."""
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    env = os.environ.get
    endpoint = env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or env("OTEL_EXPORTER_OTLP_ENDPOINT")
    wanted = env("OTEL_METRICS_EXPORTER", "otlp" if endpoint else "none")
    exporters = {name.strip().lower() for name in wanted.split(",") if name.strip()} - {"none"}
    if not exporters or env("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if unknown := exporters - {"otlp", "prometheus"}:
        raise ValueError(
            f"OTEL_METRICS_EXPORTER={wanted!r}: a2r-graph exports otlp and prometheus, not "
            f"{', '.join(sorted(unknown))}; install your own MeterProvider for others"
        )
    if isinstance(metrics.get_meter_provider(), SdkMeterProvider):
        return False
    readers = []
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if "prometheus" in exporters:
        readers.append(_prometheus_reader(env))
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": "a2r-graph"})
    metrics.set_meter_provider(SdkMeterProvider(metric_readers=readers, resource=resource))
    return True


def _prometheus_reader(env: Any) -> Any:
    global _prometheus_started
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    host = env("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
    port = int(env("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
    if not _prometheus_started:
        start_http_server(port=port, addr=host)
        _prometheus_started = True
    return PrometheusMetricReader()
