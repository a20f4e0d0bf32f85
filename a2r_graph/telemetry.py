"""OpenTelemetry for the strategies' graphs: what every graph builder takes beside its models
(``GraphOptions``: checkpointer, tracer and meter providers), a strategy's tracer and metrics
(``Telemetry``), and the set-up from the standard ``OTEL_*`` environment, by an explicit call
of each entry point (the ``a2r`` command, ``a2r serve``, the LangGraph Server module):
importing the package opens no port and installs no global provider."""

from __future__ import annotations

from typing import TypedDict

from langgraph.types import Checkpointer
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from a2r_graph import metrics, tracing


class GraphOptions(TypedDict, total=False):
    """What every strategy's graph builder takes beside its models and its context schema."""

    checkpointer: Checkpointer
    """Saves each run on its thread (durable runs, resume); None: nothing is saved."""
    tracer_provider: TracerProvider | None
    """Where its spans go (default: the global OpenTelemetry provider)."""
    meter_provider: MeterProvider | None
    """Where its metrics (``a2r_graph.metrics``) go (default: the global provider)."""


class Telemetry:
    """A strategy's tracer (``a2r_graph.<name>``) and the GenAI metrics of its model calls."""

    def __init__(self, name: str, options: GraphOptions) -> None:
        provider = options.get("tracer_provider")
        self.tracer = trace.get_tracer(f"a2r_graph.{name}", tracer_provider=provider)
        self.metrics = metrics.RunMetrics(options.get("meter_provider"))


def configure_from_env() -> None:
    """Install the tracer and meter providers that ``OTEL_*`` asks for
    (``a2r_graph.tracing``, ``a2r_graph.metrics``); providers an application installed first
    win."""
    tracing.configure_from_env()
    metrics.configure_from_env()
