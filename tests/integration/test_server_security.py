"""LangGraph Server as a hostile caller meets it: auth, endpoints a run may not choose, keys
that stay with their endpoint, validation on every route that creates a run, and a fuzz test
of those routes that must find no 500.

A real ``langgraph dev`` serves the graph over the loopback model server, which requires the
operator's key; a second, "attacker" server records every request it gets, and a third one,
which the operator allows runs to choose, records the headers it is sent.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2r_graph.context import A2RContext, StageConfig
from tests.integration.conftest import AUTH, SERVER_KEY, langgraph_dev
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
QUESTION = "What is 2 + 3?"
JSON = {"content-type": "application/json"}
MCP_HEADERS = {**AUTH, **JSON, "accept": "application/json, text/event-stream"}


class RecordingServer:
    """An OpenAI-compatible endpoint that answers ``\\boxed{5}`` and records each request's
    path and headers: what a host outside the deployment would learn."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                recorder.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                self._send(json.dumps({"data": [{"id": "m", "max_model_len": 4096}]}).encode())

            def do_POST(self) -> None:
                recorder.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                request = json.loads(self.rfile.read(int(self.headers["content-length"])))
                usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
                message = {"role": "assistant", "content": "\\boxed{5}"}
                if not request.get("stream"):
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    body = {"id": "r", "object": "chat.completion", "created": 0, "model": "m"}
                    return self._send(
                        json.dumps({**body, "choices": [choice], "usage": usage}).encode()
                    )
                chunk = {"id": "r", "object": "chat.completion.chunk", "created": 0, "model": "m"}
                events = [
                    {**chunk, "choices": [{"index": 0, "delta": message, "finish_reason": "stop"}]},
                    {**chunk, "choices": [], "usage": usage},
                ]
                stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                self._send(stream.encode(), "text/event-stream")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, monkeypatch_module) -> Iterator[dict]:
    operator_key = f"sk-operator-{uuid.uuid4().hex}"
    db_password = f"db-{uuid.uuid4().hex}"
    monkeypatch_module.setenv("A2R_TEST_OPERATOR_KEY", operator_key)
    monkeypatch_module.setenv("A2R_TEST_DB_PASSWORD", db_password)
    attacker, allowed = RecordingServer(), RecordingServer()
    try:
        with LoopbackServer(
            models=("explore", "synth"), api_key_env="A2R_TEST_OPERATOR_KEY"
        ) as loop:
            env = {
                "A2R_EXPLORER__BASE_URL": loop.base_url,
                "A2R_EXPLORER__MODEL": "explore",
                "A2R_EXPLORER__API_KEY_ENV": "A2R_TEST_OPERATOR_KEY",
                "A2R_SYNTHESIZER__BASE_URL": loop.base_url,
                "A2R_SYNTHESIZER__MODEL": "synth",
                "A2R_SYNTHESIZER__API_KEY_ENV": "A2R_TEST_OPERATOR_KEY",
                "A2R_MAX_ATTEMPTS": "1",
                "A2R_SERVER_ALLOWED_BASE_URLS": allowed.base_url,
            }
            log_path = tmp_path_factory.mktemp("security") / "langgraph-dev.log"
            with langgraph_dev(env, log_path) as (url, _):
                yield {
                    "url": url,
                    "attacker": attacker,
                    "allowed": allowed,
                    "secrets": (operator_key, db_password),
                    "log": log_path,
                }
    finally:
        attacker.close()
        allowed.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def http(deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deployment["url"], headers=AUTH, timeout=60) as client:
        yield client


def run(question: str = QUESTION, **fields) -> dict:
    return {"assistant_id": "a2r", "input": {"question": question}, **fields}


def test_requests_need_the_servers_key(deployment):
    with httpx.Client(base_url=deployment["url"], timeout=60) as anonymous:
        for headers in ({}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}):
            refused = anonymous.post("/runs/wait", json=run(), headers=headers)
            assert refused.status_code == 401, headers
            assert "API key" in refused.text
        # Bad input from a stranger learns nothing but 401: auth runs first.
        assert anonymous.post("/runs/wait", json=run("  ")).status_code == 401
        for headers in (AUTH, {"authorization": f"Bearer {SERVER_KEY}"}):
            answered = anonymous.post("/runs/wait", json=run(context={"n": 2}), headers=headers)
            assert answered.status_code == 200 and answered.json()["boxed_answer"] == "5"


@pytest.mark.parametrize(
    "explorer",
    [
        {"model": "x", "base_url": "ATTACKER"},
        {"model": "x", "base_url": "ATTACKER", "api_key_env": "A2R_TEST_DB_PASSWORD"},
        {"model": "x", "api_key_env": "A2R_TEST_DB_PASSWORD"},
    ],
)
def test_a_run_cannot_send_requests_or_keys_to_its_own_host(deployment, http, explorer):
    attacker = deployment["attacker"]
    explorer = {k: attacker.base_url if v == "ATTACKER" else v for k, v in explorer.items()}
    context = {"explorer": explorer}
    refused = http.post("/runs/wait", json=run(context=context))
    assert refused.status_code == 422
    by_config = http.post("/runs/wait", json=run(config={"configurable": context}))
    assert by_config.status_code == 422
    preset = http.post("/assistants", json={"graph_id": "a2r", "context": context})
    assert preset.status_code == 422
    call = {"name": "a2r", "arguments": {"question": QUESTION}, "context": context}
    mcp = http.post("/mcp", headers=MCP_HEADERS, json=_rpc("tools/call", call))
    assert mcp.json()["error"]["code"] == -32602
    assert attacker.requests == []  # nothing reached the attacker's host
    for answer in (refused.text, by_config.text, preset.text, mcp.text):
        assert not any(secret in answer for secret in deployment["secrets"])


def test_an_allowed_endpoint_is_used_without_the_operators_key(deployment, http):
    allowed = deployment["allowed"]
    context = {"n": 2, "explorer": {"base_url": allowed.base_url, "model": "m"}}
    answered = http.post("/runs/wait", json=run(context=context))
    assert answered.status_code == 200, answered.text
    result = answered.json()
    assert [path["boxed"] for path in result["paths"]] == ["5", "5"]
    chats = [headers for path, headers in allowed.requests if path.endswith("/chat/completions")]
    assert len(chats) == 2
    sent = json.dumps(allowed.requests)
    assert not any(secret in sent for secret in deployment["secrets"])
    assert all(headers.get("authorization") == "Bearer EMPTY" for headers in chats)


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/runs/batch", [run(), run("  ")], "run 1 of the batch: invalid A2RInputModel"),
        ("POST", "/runs/batch", [run(context={"n": 0})], "context.n: Input should be greater"),
        (
            "POST",
            "/runs/crons",
            {**run(context={"n": 0}), "schedule": "0 0 * * *"},
            "context.n: Input should be greater",
        ),
        ("POST", "/runs/crons", {**run("  "), "schedule": "0 0 * * *"}, "input.question"),
        ("POST", "/threads/THREAD/runs/crons", {**run("  "), "schedule": "0 0 * * *"}, "input"),
        ("POST", "/assistants", {"graph_id": "a2r", "context": {"n": 0}}, "context.n"),
        ("POST", "/assistants", {"graph_id": "a2r", "context": [1]}, "context: must be an object"),
        ("PATCH", "/assistants/ASSISTANT", {"context": {"nn": 1}}, "context.nn: unknown field"),
    ],
)
def test_every_route_that_creates_a_run_validates_it(http, method, path, body, message):
    thread = http.post("/threads", json={}).json()["thread_id"]
    assistant = http.post("/assistants", json={"graph_id": "a2r", "context": {"n": 2}}).json()
    path = path.replace("THREAD", thread).replace("ASSISTANT", assistant["assistant_id"])
    refused = http.request(method, path, json=body)
    assert refused.status_code == 422, refused.text
    assert message in refused.json()["detail"]
    assert http.get(f"/threads/{thread}/runs").json() == []
    assert http.post("/runs/crons/search", json={}).json() == []


def test_mcp_tool_calls_are_validated_like_runs(http):
    call = {"name": "a2r", "arguments": {"question": "  "}}
    refused = http.post("/mcp", headers=MCP_HEADERS, json=_rpc("tools/call", call))
    assert refused.status_code == 200
    # a tool error the calling model reads (MCP 2025-11-25: invalid arguments are not
    # protocol errors); a2r_graph.serving.mcp_tool
    result = refused.json()["result"]
    assert result["isError"] and "arguments.question" in result["content"][0]["text"]


def _rpc(method: str, params: dict) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


# The fuzz test: payloads shaped like run requests, with every kind of JSON where the
# server expects objects, strings and numbers, and the context's own field names.
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
_stage = st.dictionaries(st.sampled_from([*StageConfig.model_fields, "url"]), _json, max_size=3)
_context = st.dictionaries(
    st.sampled_from([*A2RContext.model_fields, "nn", "thread_id"]), _json | _stage, max_size=4
)


def _mostly(likely: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """``likely`` three times in four: well-formed enough to reach the checks behind it."""
    return st.integers(0, 3).flatmap(lambda roll: other if roll == 0 else likely)


_payload = st.fixed_dictionaries(
    {"assistant_id": _mostly(st.just("a2r"), _json)},
    optional={
        "input": _mostly(
            st.just({"question": QUESTION}),
            st.fixed_dictionaries({}, optional={"question": st.text(max_size=20) | _json}) | _json,
        ),
        "context": _mostly(_context, _json),
        "config": _mostly(st.fixed_dictionaries({"configurable": _context | _json}), _json),
    },
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(["/runs/wait", "/runs", "/runs/batch", "/runs/crons", "THREAD"]),
    payload=_payload,
)
def test_fuzzed_run_requests_never_get_a_500(http, route, payload):
    if route == "/runs/batch":
        body: object = [payload]
    elif route == "/runs/crons":
        body = {**payload, "schedule": "0 0 1 1 *"}
    else:
        body = payload
    if route == "THREAD":
        route = f"/threads/{http.post('/threads', json={}).json()['thread_id']}/runs/wait"
    answer = http.post(route, content=json.dumps(body, allow_nan=True), headers=JSON)
    assert answer.status_code < 500, (route, body, answer.text[:500])


# The OpenAI and MCP bodies: every field of a chat request (and of a tool call's arguments)
# with any JSON, well-formed enough three times in four to reach the checks behind the first.
_message = st.fixed_dictionaries(
    {"role": _mostly(st.just("user"), _json), "content": _mostly(st.just(QUESTION), _json)}
)
_chat = st.fixed_dictionaries(
    {
        "model": _mostly(st.sampled_from(["a2r", "a2r:n=2", "a2r:n=x,synthesizer.seed=-1"]), _json),
        "messages": _mostly(st.lists(_message, min_size=1, max_size=2), _json),
    },
    optional={
        name: _json
        for name in (
            "stream",
            "stream_options",
            "temperature",
            "top_p",
            "max_tokens",
            "max_completion_tokens",
            "seed",
            "n",
            "logprobs",
            "tool_choice",
            "response_format",
            "modalities",
        )
    }
    | {"a2r": _mostly(_context, _json)},
)
_arguments = st.fixed_dictionaries(
    {"question": _mostly(st.just(QUESTION), _json)},
    optional={"n": _json, "include_traces": _json, "context": _json},
)
_call = st.fixed_dictionaries(
    {"name": _mostly(st.just("a2r"), _json), "arguments": _mostly(_arguments, _json)}
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(door=st.sampled_from(["openai", "mcp"]), chat=_chat, call=_call)
def test_fuzzed_openai_and_mcp_bodies_never_get_a_500(http, door, chat, call):
    if door == "openai":
        answer = http.post(
            "/v1/chat/completions", content=json.dumps(chat, allow_nan=True), headers=JSON
        )
    else:
        body = json.dumps(_rpc("tools/call", call), allow_nan=True)
        answer = http.post("/mcp", content=body, headers=MCP_HEADERS)
    assert answer.status_code < 500, (door, chat if door == "openai" else call, answer.text[:500])
    assert answer.status_code != 415  # the body reached the door's own checks
    if door == "mcp" and answer.status_code == 200 and "error" not in answer.json():
        result = answer.json()["result"]
        assert "Traceback" not in json.dumps(result)


@pytest.fixture(scope="module")
def keyed_vllm(monkeypatch_module) -> Iterator[tuple[object, str]]:
    """A real vLLM server started with ``--api-key`` (the key in ``A2R_TEST_VLLM_KEY``)."""
    if os.environ.get("A2R_TEST_BASE_URL"):
        pytest.skip("starts its own embedded vLLM server with --api-key")
    from servers.embedded import EmbeddedVLLM

    key = f"sk-vllm-{uuid.uuid4().hex}"
    monkeypatch_module.setenv("A2R_TEST_VLLM_KEY", key)
    model = os.environ.get("A2R_TEST_SERVER_MODEL", "smollm2-135m")
    server = EmbeddedVLLM(model=model, extra_args=["--api-key", key])
    server.ready_path = "/health"  # /v1/models now answers 401 to the readiness check
    with server:
        yield server, key


def test_a_real_model_servers_key_stays_with_it(keyed_vllm, tmp_path):
    """LangGraph Server over a vLLM that requires its key: runs use the key, a run that
    points a stage at its own host is refused before any call, and the key shows nowhere."""
    server, key = keyed_vllm
    assert httpx.get(f"{server.base_url}/models", timeout=30).status_code == 401
    stage = {
        "BASE_URL": server.base_url,
        "MODEL": server.model_name,
        "API_KEY_ENV": "A2R_TEST_VLLM_KEY",
        "MAX_TOKENS": "32",
    }
    env = {f"A2R_{name}__{k}": v for name in ("EXPLORER", "SYNTHESIZER") for k, v in stage.items()}
    attacker = RecordingServer()
    log_path = tmp_path / "langgraph-dev.log"
    try:
        with (
            langgraph_dev({**env, "A2R_MAX_ATTEMPTS": "1"}, log_path) as (url, _),
            httpx.Client(base_url=url, headers=AUTH, timeout=300) as http,
        ):
            answered = http.post("/runs/wait", json=run(context={"n": 2}))
            assert answered.status_code == 200, answered.text
            assert answered.json()["usage"]["total"]["calls"] == 3
            answers = [answered.text]
            for explorer in (
                {"model": server.model_name, "base_url": attacker.base_url},
                {"model": "x", "api_key_env": "A2R_TEST_VLLM_KEY", "base_url": attacker.base_url},
            ):
                refused = http.post("/runs/wait", json=run(context={"explorer": explorer}))
                assert refused.status_code == 422, refused.text
                answers.append(refused.text)
    finally:
        attacker.close()
    assert attacker.requests == []
    assert not any(key in text for text in [*answers, log_path.read_text()])
