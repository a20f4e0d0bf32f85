"""Importing the package has no side effects: telemetry is installed by the entry points."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def test_importing_the_package_opens_no_port_and_installs_no_provider():
    """Catches: a module that configures OpenTelemetry when imported (a Prometheus port
    opened, global providers replaced) for every user of ``import a2r_graph``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"""
import socket
import a2r_graph, a2r_graph.graph
from a2r_graph import graph  # the compiled graph
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
assert not isinstance(metrics.get_meter_provider(), MeterProvider), "a meter provider"
assert not isinstance(trace.get_tracer_provider(), TracerProvider), "a tracer provider"
with socket.socket() as free:
    free.bind(("127.0.0.1", {port}))  # nothing listens on the exporter's port
from a2r_graph.telemetry import configure_from_env
configure_from_env()
assert isinstance(metrics.get_meter_provider(), MeterProvider)
assert isinstance(trace.get_tracer_provider(), TracerProvider)
print("ok")
"""
    env = {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
