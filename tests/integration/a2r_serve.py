"""Shared by the front-end tests (OpenAI-compatible API, MCP tool): a real ``a2r serve`` and a
real ``langgraph dev`` over one loopback model server, and the deployment's environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.conftest import A2R, free_port, server_process
from tests.loopback import LoopbackServer

PRICES = {
    "A2R_EXPLORER__INPUT_PRICE_PER_MTOK": "0.1",
    "A2R_EXPLORER__OUTPUT_PRICE_PER_MTOK": "0.4",
    "A2R_SYNTHESIZER__INPUT_PRICE_PER_MTOK": "0.3",
    "A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK": "1.2",
}


def loopback_env(loop: LoopbackServer) -> dict[str, str]:
    """Both stages on the loopback server ("explore", "synth"), no retries, short timeouts,
    prices: what an operator's A2R_* would say."""
    return {
        "A2R_EXPLORER__BASE_URL": loop.base_url,
        "A2R_EXPLORER__MODEL": "explore",
        "A2R_SYNTHESIZER__BASE_URL": loop.base_url,
        "A2R_SYNTHESIZER__MODEL": "synth",
        "A2R_N": "2",
        "A2R_MAX_ATTEMPTS": "1",
        "A2R_REQUEST_TIMEOUT_S": "5",
        **PRICES,
    }


@contextmanager
def a2r_serve(env: dict[str, str], log_path: Path, *args: str) -> Iterator[str]:
    """A real ``a2r serve`` on a free loopback port with ``env`` over this process's
    environment (and the tests' ``A2R_SERVER_API_KEY``); yields its URL."""
    port = free_port()
    with server_process([A2R, "serve", "--port", str(port), *args], env, log_path, port) as up:
        yield up[0]
