"""OpenTelemetry set-up from the standard ``OTEL_*`` environment, by an explicit call of each
entry point (the ``a2r`` command, ``a2r serve``, the LangGraph Server module): importing the
package opens no port and installs no global provider."""

from __future__ import annotations

from a2r_graph import metrics, tracing


def configure_from_env() -> None:
    """Install the tracer and meter providers that ``OTEL_*`` asks for
    (``a2r_graph.tracing``, ``a2r_graph.metrics``); providers an application installed first
    win."""
    tracing.configure_from_env()
    metrics.configure_from_env()
