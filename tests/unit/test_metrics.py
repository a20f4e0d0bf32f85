"""OpenTelemetry metrics (GenAI client metrics, runs, failures, shortcuts, cost), read back from
the SDK's in-memory reader: their totals equal the runs' own usage."""

import os
import subprocess
import sys

import httpx
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from a2r_graph import build_graph
from tests.fakes import factory, make_context, reply, scripted
from tests.metric_points import points, total

PRICES = {"input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0}
DOWN = openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))


async def test_metrics_add_up_to_the_runs_usage():
    reader = InMemoryMetricReader()
    explorer = scripted(
        reply("\\boxed{1}", input_tokens=100, output_tokens=10),
        reply("\\boxed{2}", input_tokens=100, output_tokens=20),
        DOWN,
        reply("\\boxed{5}", input_tokens=100, output_tokens=30),  # shortcut run, path 0
        reply("\\boxed{5}", input_tokens=100, output_tokens=40),
    )
    synthesizer = scripted(reply("\\boxed{2}", input_tokens=500, output_tokens=50))
    graph = build_graph(
        factory(explorer, synthesizer), meter_provider=MeterProvider(metric_readers=[reader])
    )
    stage = {"model": "explorer-model", **PRICES}
    context = make_context(n=3, max_attempts=1, explorer=stage)
    await graph.ainvoke({"question": "q?"}, context=context)
    await graph.ainvoke(
        {"question": "q?"}, context=make_context(n=2, shortcut=True, explorer=stage)
    )
    data = points(reader)

    # The scripted replies' tokens: explorers 100 in each (the failed call none) and 10, 20,
    # 30, 40 out; the synthesizer 500 in, 50 out (the shortcut run calls it not).
    token_type = "gen_ai.token.type"
    assert total(data, "gen_ai.client.token.usage", **{token_type: "input"}) == 4 * 100 + 500
    assert total(data, "gen_ai.client.token.usage", **{token_type: "output"}) == 100 + 50
    synthesizer_out = {"a2r.stage": "synthesizer", token_type: "output"}
    assert total(data, "gen_ai.client.token.usage", **synthesizer_out) == 50
    # 400 input tokens at 1.0 and 100 output tokens at 2.0 per million
    assert total(data, "a2r.cost", **{"a2r.stage": "explorer"}) == pytest.approx(600e-6)
    assert total(data, "a2r.runs", **{"a2r.outcome": "answered"}) == 1
    assert total(data, "a2r.runs", **{"a2r.outcome": "shortcut"}) == 1
    assert total(data, "a2r.explorer.failures") == 1
    failed_calls = total(
        data, "gen_ai.client.operation.duration", **{"error.type": "APIConnectionError"}
    )
    assert failed_calls > 0  # the failed call's duration, with its error type
    models = {
        (dict(attrs)["a2r.stage"], dict(attrs)["gen_ai.request.model"])
        for metric, attrs in data
        if metric == "gen_ai.client.token.usage"
    }
    assert models == {("explorer", "explorer-model"), ("synthesizer", "synthesizer-model")}


def test_prometheus_endpoint_from_the_standard_variables(tmp_path):
    """OTEL_METRICS_EXPORTER=prometheus serves the metrics on OTEL_EXPORTER_PROMETHEUS_PORT."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = (
        "import urllib.request, a2r_graph.telemetry\n"
        "a2r_graph.telemetry.configure_from_env()\n"
        "from a2r_graph.metrics import RunMetrics\n"
        "RunMetrics().run('answered', 2.5, 1)\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())\n"
    )
    env = {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.startswith('a2r_runs_total{a2r_outcome="answered"') and line.endswith(" 1.0")
        for line in lines
    )
    assert any(
        line.startswith('a2r_run_duration_seconds_sum{a2r_outcome="answered"')
        and line.endswith(" 2.5")
        for line in lines
    )
    assert any(line.startswith("a2r_explorer_failures_total{") for line in lines)

    env["OTEL_METRICS_EXPORTER"] = "statsd"
    done = subprocess.run(
        [sys.executable, "-c", "import a2r_graph.telemetry as t; t.configure_from_env()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "exports otlp and prometheus, not statsd" in done.stderr
