"""Metrics on a real Prometheus (Debian's ``prometheus``): it scrapes ``a2r serve``'s
OpenTelemetry metrics and the vLLM server's ``/metrics``; PromQL reads back the runs' usage."""

from __future__ import annotations

import time

import openai
import pytest

from servers.prometheus import PrometheusServer
from tests.integration.a2r_serve import PRICES, a2r_serve
from tests.integration.conftest import SERVER_KEY, free_port

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "What is 3 + 4? Put the answer in \\boxed{}."}]


def value(prometheus: PrometheusServer, promql: str) -> float | None:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None


def settled(prometheus: PrometheusServer, promql: str, expected: float, timeout: float = 30):
    """``promql``'s value once it equals ``expected`` (scrapes land every second), or the last."""
    deadline = time.monotonic() + timeout
    while (found := value(prometheus, promql)) != pytest.approx(
        expected
    ) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def test_prometheus_reads_back_tokens_cost_and_runs(vllm_server, tmp_path):
    metrics_port = free_port()
    env = {
        "A2R_EXPLORER__BASE_URL": vllm_server.base_url,
        "A2R_EXPLORER__MODEL": vllm_server.model_name,
        "A2R_SYNTHESIZER__BASE_URL": vllm_server.base_url,
        "A2R_SYNTHESIZER__MODEL": vllm_server.model_name,
        "A2R_EXPLORER__MAX_TOKENS": "24",
        "A2R_SYNTHESIZER__MAX_TOKENS": "24",
        "A2R_N": "2",
        **PRICES,
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
    }
    targets = [f"127.0.0.1:{metrics_port}", f"{vllm_server.root}/metrics"]
    with a2r_serve(env, tmp_path / "serve.log") as url, PrometheusServer(targets) as prometheus:
        generated = "sum(vllm:generation_tokens_total)"
        deadline = time.monotonic() + 30
        while (start := value(prometheus, generated)) is None and time.monotonic() < deadline:
            time.sleep(0.5)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=SERVER_KEY, max_retries=0)
        replies = [client.chat.completions.create(model="a2r", messages=QUESTION) for _ in range(2)]

        output = sum(r.usage.completion_tokens for r in replies)
        prompt = sum(r.usage.prompt_tokens for r in replies)
        cost = sum(r.usage.model_extra["cost"] for r in replies)
        tokens = 'sum(gen_ai_client_token_usage_sum{{gen_ai_token_type="{}"}})'
        assert settled(prometheus, tokens.format("output"), output) == pytest.approx(output)
        assert value(prometheus, tokens.format("input")) == pytest.approx(prompt)
        assert value(prometheus, "sum(a2r_cost_total)") == pytest.approx(cost)
        assert value(prometheus, 'sum(a2r_runs_total{a2r_outcome="answered"})') == 2
        calls = "sum(gen_ai_client_operation_duration_seconds_count)"
        assert value(prometheus, calls) == 6  # 2 explorers + 1 synthesizer, twice
        # and the model server counted the same tokens
        assert settled(prometheus, generated, start + output) == pytest.approx(start + output)
