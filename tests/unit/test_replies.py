"""Replies a server should never send: each is a failed attempt with a clear message, retried,
then a per-path failure (explorer) or an ``EndpointUnavailableError`` naming the endpoint
(synthesizer), never a traceback; ``Retry-After`` on 429/503 is honoured, capped.

The model calls go through the real ``ChatVLLM`` (``vllm_chat_model``) over real HTTP to a tiny
in-test server that answers from a script.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from tenacity import AsyncRetrying, RetryCallState, wait_fixed

from a2r_graph import EndpointUnavailableError, MissingUsageError, build_graph, endpoint
from a2r_graph.calls import complete, is_transient, retry_after_s, wait_retry_after
from a2r_graph.chat_models import vllm_chat_model
from a2r_graph.context import StageConfig
from a2r_graph.errors import MalformedReplyError, ModelRequestError
from tests.fakes import factory, make_context, reply, scripted

USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def completion(content="\\boxed{42}", **fields):
    message = {"role": "assistant", "content": content}
    body = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": USAGE}  # fmt: skip
    return {**body, **fields}


def answer(status=200, body=None, *, text=None, content_type="application/json", headers=None):
    """One scripted HTTP answer."""
    data = text if text is not None else json.dumps(completion() if body is None else body)
    return status, {"content-type": content_type, **(headers or {})}, data


def sse(*events):
    text = "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)
    return answer(text=text + "data: [DONE]\n\n", content_type="text/event-stream")


def chunk(delta, finish_reason=None, **extra):
    choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": choices, **extra}  # fmt: skip


class ScriptedServer:
    """HTTP on 127.0.0.1: each route answers from its script in order, then its default
    (a good completion); records every request (path, headers)."""

    def __init__(self):
        self.scripts: dict[str, list] = {}
        self.defaults = {"/v1/chat/completions": answer()}
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                server.requests.append((self.path, dict(self.headers)))
                script = server.scripts.get(self.path) or []
                status, headers, text = (
                    script.pop(0) if script else server.defaults.get(self.path, answer(404, {}))
                )
                data = text.replace("{authorization}", self.headers.get("authorization", ""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data.encode())))
                self.end_headers()
                self.wfile.write(data.encode())

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def chat_requests(self):
        return sum(path == "/v1/chat/completions" for path, _ in self.requests)


@pytest.fixture
def server():
    scripted_server = ScriptedServer()
    scripted_server.thread.start()
    yield scripted_server
    scripted_server.httpd.shutdown()
    scripted_server.httpd.server_close()


def stage_at(server, **fields):
    return StageConfig(base_url=server.base_url, model="m", max_tokens=64, **fields)


async def call(server, *, stream=False, stage=None, **context):
    """One explorer call through the real ChatVLLM client."""
    stage = stage or stage_at(server)
    model = vllm_chat_model(stage, 10)
    if stream:
        model = model.model_copy(update={"streaming": True})
    ctx = make_context(**{"max_attempts": 3, **context})
    return await complete(model, "What is 40+2?", "explorer", stage, ctx, path_index=0)


MALFORMED = {
    "not JSON (an HTML page)": (
        answer(text="<html>502 Bad Gateway</html>", content_type="text/html"),
        "MalformedReplyError: the reply is not a JSON object: <html>502 Bad Gateway</html>",
    ),
    "invalid JSON": (
        answer(text='{"choices": ['),
        "MalformedReplyError: the reply is not valid JSON",
    ),
    "empty choices": (
        answer(body=completion(choices=[])),
        "MalformedReplyError: the reply has no `choices`: []",
    ),
    "null message": (
        answer(body=completion(choices=[{"index": 0, "message": None}])),
        "MalformedReplyError: choices[0].message is not a message object",
    ),
    "non-integer tokens": (
        answer(body=completion(usage={"prompt_tokens": 1.5, "completion_tokens": 3})),
        "MalformedReplyError: usage.prompt_tokens is not a token count: 1.5",
    ),
    "a stream without usage": (
        sse(chunk({"role": "assistant", "content": "\\boxed{42}"}), chunk({}, "stop")),
        "MalformedReplyError: the streamed reply ended without `usage`",
    ),
    "a stream with an error event": (
        sse(chunk({"content": "\\boxed"}), {"error": {"message": "engine died"}}),
        "APIError: engine died",
    ),
}


@pytest.mark.parametrize("kind", MALFORMED)
async def test_malformed_reply_is_retried_then_fails_the_call_naming_the_endpoint(server, kind):
    bad, message = MALFORMED[kind]
    server.scripts["/v1/chat/completions"] = [bad] * 3
    with pytest.raises(EndpointUnavailableError) as raised:
        await call(server, stream="stream" in kind)
    assert str(raised.value).startswith(
        f"explorer endpoint {server.base_url} (model 'm') failed after 3 attempt(s): "
    )
    assert message in str(raised.value)
    assert server.chat_requests() == 3  # every attempt went out


async def test_a_malformed_reply_then_a_good_one_is_a_success(server, caplog):
    server.scripts["/v1/chat/completions"] = [answer(body=completion(choices=[]))]
    with caplog.at_level(logging.WARNING, logger="a2r_graph"):
        result = await call(server)
    assert result["boxed"] == "42" and result["usage"]["output_tokens"] == 3
    assert server.chat_requests() == 2
    assert "attempt 1 to" in caplog.text and "MalformedReplyError" in caplog.text


async def test_a_whole_reply_without_usage_fails_at_once(server):
    """Decision: a server that never reports usage is a configuration problem (retrying cannot
    fix it), so MissingUsageError stops the run at once; only a stream cut short is retried."""
    server.scripts["/v1/chat/completions"] = [answer(body=completion(usage=None))]
    with pytest.raises(MissingUsageError, match="carried no token usage"):
        await call(server)
    assert server.chat_requests() == 1


async def test_messages_never_show_the_api_key_or_url_credentials(server, monkeypatch):
    monkeypatch.setenv("A2R_TEST_REPLY_KEY", "sk-very-secret")
    page = answer(text="<html>you sent {authorization}</html>", content_type="text/html")
    server.scripts["/v1/chat/completions"] = [page] * 3
    keyed = stage_at(server, api_key_env="A2R_TEST_REPLY_KEY")
    with pytest.raises(EndpointUnavailableError) as raised:
        await call(server, stage=keyed)
    assert "sk-very-secret" not in str(raised.value) and "Bearer ***" in str(raised.value)

    server.scripts["/v1/chat/completions"] = [answer(body=completion(choices=[]))] * 3
    with_password = StageConfig(
        base_url=server.base_url.replace("//", "//user:hunter2@"), model="m"
    )
    with pytest.raises(EndpointUnavailableError) as raised:
        await call(server, stage=with_password)
    assert "hunter2" not in str(raised.value)
    assert str(raised.value).startswith("explorer endpoint http://***@127.0.0.1:")


# -- through the graph: an explorer's bad reply fails its path, a synthesizer's the run -------


async def test_malformed_explorer_reply_fails_only_its_path():
    bad = MalformedReplyError("the reply has no `choices`: []")
    explorer = scripted(reply("\\boxed{42}"), reply("\\boxed{42}"), bad, bad)
    graph = build_graph(factory(explorer, scripted(reply("\\boxed{42}"))))
    result = await graph.ainvoke(
        {"question": "q"}, context=make_context(n=3, max_attempts=2, min_paths=2)
    )
    failed = [p for p in result["paths"] if p["error"]]
    assert len(failed) == 1 and len(result["paths"]) == 3
    assert (
        "failed after 2 attempt(s): MalformedReplyError: the reply has no `choices`"
        in (failed[0]["error"])
    )
    assert result["boxed_answer"] == "42"


async def test_malformed_synthesizer_reply_fails_the_run_naming_the_endpoint():
    bad = MalformedReplyError("the reply is not valid JSON")
    graph = build_graph(factory(scripted(reply("\\boxed{42}")), scripted(bad, bad)))
    context = make_context(
        n=1,
        max_attempts=2,
        synthesizer={
            "model": "synthesizer-model",
            "base_url": "http://user:pw@gpu-b:8002/v1",
            "context_window": 32768,
        },
    )
    with pytest.raises(EndpointUnavailableError) as raised:
        await graph.ainvoke({"question": "q"}, context=context)
    assert str(raised.value) == (
        "synthesizer endpoint http://***@gpu-b:8002/v1 (model 'synthesizer-model') failed "
        "after 2 attempt(s): MalformedReplyError: the reply is not valid JSON"
    )


# -- Retry-After ---------------------------------------------------------------------------


def status_error(status, headers):
    request = httpx.Request("POST", "http://gpu-a:8001/v1/chat/completions")
    response = httpx.Response(status, request=request, headers=headers, json={"error": {}})
    return openai.APIStatusError("busy", response=response, body={})


@pytest.mark.parametrize(
    ("status", "headers", "seconds"),
    [
        (429, {"Retry-After": "2"}, 2.0),
        (503, {"Retry-After": "0"}, 0.0),
        (429, {"retry-after-ms": "1500"}, 1.5),
        (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
        (429, {"Retry-After": "soon"}, None),
        (429, {"Retry-After": "nan"}, None),
        (429, {}, None),
        (500, {"Retry-After": "2"}, None),  # only 429 and 503 ask for a wait
    ],
)
def test_retry_after_is_read_in_seconds_or_as_a_date(status, headers, seconds):
    assert retry_after_s(status_error(status, headers)) == seconds


def test_retry_after_as_an_http_date_is_the_time_left():
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    # The date has whole seconds: between 59 and 60 s are left.
    assert 58 <= retry_after_s(status_error(503, {"Retry-After": in_a_minute})) <= 60


def waited(error, backoff=0.1, cap=10.0):
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.set_exception((type(error), error, None))
    return wait_retry_after(wait_fixed(backoff), cap)(state)


def test_the_wait_honours_retry_after_capped_by_retry_max_wait():
    assert waited(status_error(429, {"Retry-After": "3"})) == 3.0
    assert waited(status_error(429, {"Retry-After": "3"}), cap=1.0) == 1.0
    assert waited(status_error(503, {"Retry-After": "0"}), backoff=0.4) == 0.4  # never shorter
    assert waited(status_error(429, {})) == 0.1  # no header: the backoff
    assert waited(TimeoutError()) == 0.1


async def test_a_429_retry_waits_what_retry_after_asks_for(server, caplog):
    server.scripts["/v1/chat/completions"] = [
        answer(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
    ]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="a2r_graph"):
        result = await call(server, retry_initial_wait_s=0.0, retry_max_wait_s=0.3)
    assert result["boxed"] == "42" and server.chat_requests() == 2
    assert time.monotonic() - started >= 0.3  # the backoff alone would be 0 s
    assert "retrying in 0.3 s" in caplog.text  # Retry-After: 1, capped by retry_max_wait_s


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 503])
async def test_transient_statuses_are_retried(server, status):
    server.scripts["/v1/chat/completions"] = [answer(status, {"error": {"message": "again"}})]
    result = await call(server, retry_initial_wait_s=0.0, retry_max_wait_s=0.0)
    assert result["boxed"] == "42" and server.chat_requests() == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_4xx_fail_at_once_with_the_servers_message(server, status):
    server.scripts["/v1/chat/completions"] = [answer(status, {"error": {"message": "no good"}})]
    with pytest.raises(ModelRequestError) as caught:
        await call(server, retry_initial_wait_s=0.0, retry_max_wait_s=0.0)
    assert caught.value.status == status and "no good" in caught.value.server_message
    assert server.chat_requests() == 1


def test_server_faults_in_a_200_reply_are_transient():
    request = httpx.Request("POST", "http://gpu-a:8001/v1/chat/completions")
    assert is_transient(MalformedReplyError("no choices"))
    assert is_transient(openai.APIError("engine died", request, body=None))  # mid-stream event
    assert not is_transient(MissingUsageError("no usage"))
    assert not is_transient(ValueError("a bug of ours is not a server fault"))


# -- endpoint.py: odd /v1/models and /tokenize answers are "unknown", never an exception ----


@pytest.fixture
def no_cached_windows(monkeypatch):
    monkeypatch.setattr(endpoint, "_windows", {})


@pytest.mark.parametrize(
    ("models", "window"),
    [
        ({"data": ["m", 1, None, {"id": "m", "max_model_len": 4096}]}, 4096),
        ({"data": [{"id": "m", "max_model_len": True}]}, None),
        ({"data": [{"id": "m", "max_model_len": -1}]}, None),
        ({"data": [{"id": "m", "max_model_len": "4096"}]}, None),
        ({"data": "m"}, None),
        ({"data": 7}, None),
        ({"data": None}, None),
        ([{"id": "m"}], None),
    ],
)
async def test_odd_model_listings_give_no_window(server, no_cached_windows, models, window):
    server.scripts["/v1/models"] = [answer(body=models)]
    assert await endpoint.context_window(stage_at(server), 10) == window


async def test_a_model_listing_that_is_not_json_gives_no_window(server, no_cached_windows):
    server.scripts["/v1/models"] = [answer(text="<html>", content_type="text/html")]
    assert await endpoint.context_window(stage_at(server), 10) is None


@pytest.mark.parametrize(
    "body", [{"count": True}, {"count": "12"}, {"count": -3}, {"count": None}, [12], "12"]
)
async def test_odd_tokenize_counts_give_no_count(server, body):
    server.scripts["/tokenize"] = [answer(body=body)]
    assert await endpoint.count_prompt_tokens(stage_at(server), "q", 10) is None


async def test_tokenize_count_is_read(server):
    server.scripts["/tokenize"] = [answer(body={"count": 12})]
    assert await endpoint.count_prompt_tokens(stage_at(server), "q", 10) == 12


# -- the context-window cache: it expires, it is bounded, an overflow reply invalidates it ---


def listing(window, *models):
    return answer(body={"data": [{"id": m, "max_model_len": window} for m in models or ["m"]]})


def models_requests(server):
    return sum(path == "/v1/models" for path, _ in server.requests)


async def test_a_cached_window_is_asked_again_once_it_expired(
    server, no_cached_windows, monkeypatch
):
    server.scripts["/v1/models"] = [listing(4096), listing(2048)]  # the server restarted
    stage = stage_at(server)
    assert await endpoint.context_window(stage, 10) == 4096
    assert await endpoint.context_window(stage, 10) == 4096
    assert models_requests(server) == 1  # cached
    monkeypatch.setattr(endpoint, "WINDOW_TTL_S", 0.0)  # now older than the time to live
    assert await endpoint.context_window(stage, 10) == 2048
    assert models_requests(server) == 2


async def test_the_window_cache_keeps_only_the_newest(server, no_cached_windows, monkeypatch):
    monkeypatch.setattr(endpoint, "MAX_WINDOWS", 2)
    server.defaults["/v1/models"] = listing(4096, "a", "b", "c")
    for model in ("a", "b", "c", "c", "a"):
        assert await endpoint.context_window(StageConfig(base_url=server.base_url, model=model), 10)
    assert [model for _, model in endpoint._windows] == ["c", "a"]
    assert models_requests(server) == 4  # "c" again came from the cache, "a" was dropped


async def test_a_prompt_rejected_as_too_long_is_fitted_to_the_servers_new_window(
    server, no_cached_windows, caplog
):
    """The synthesizer's server restarted with a smaller --max-model-len since its window was
    cached: its 400 makes the run read the window again and fit the references to it."""
    chat, long_answer = "/v1/chat/completions", "step " * 300 + "so \\boxed{42}"
    too_long = "This model's maximum context length is 2048 tokens and your request has 3300"
    server.scripts[chat] = [
        answer(body=completion(long_answer)),
        answer(body=completion(long_answer)),
        answer(400, {"error": {"message": too_long, "type": "BadRequestError"}}),
    ]
    server.scripts["/v1/models"] = [listing(32768), listing(2048)]
    stage = {"base_url": server.base_url, "model": "m", "max_tokens": 64}
    with caplog.at_level(logging.WARNING, logger="a2r_graph"):
        result = await build_graph().ainvoke(
            {"question": "q"}, context=make_context(n=2, explorer=stage, synthesizer=stage)
        )
    assert result["boxed_answer"] == "42"
    assert result["reference_fit"]["context_window"] == 2048
    assert result["reference_fit"]["truncated"] == [0, 1]
    assert server.chat_requests() == 4 and models_requests(server) == 2
    assert "fitted again to its 2048-token window" in caplog.text


async def test_an_overflow_reply_the_window_does_not_explain_fails_without_a_second_call(
    server, no_cached_windows
):
    """The server still reports the window the prompt was fitted to: fitting again would send
    the same prompt, so the server's 400 surfaces at once."""
    too_long = "This model's maximum context length is 32768 tokens and your request has 40000"
    server.scripts["/v1/chat/completions"] = [
        answer(body=completion()),
        answer(400, {"error": {"message": too_long, "type": "BadRequestError"}}),
    ]
    server.defaults["/v1/models"] = listing(32768)
    stage = {"base_url": server.base_url, "model": "m", "max_tokens": 64}
    with pytest.raises(ModelRequestError, match="maximum context length"):
        await build_graph().ainvoke(
            {"question": "q"}, context=make_context(n=1, explorer=stage, synthesizer=stage)
        )
    assert server.chat_requests() == 2 and models_requests(server) == 2


async def test_a_llamacpp_tokenize_reply_is_counted_over_its_chat_template(server):
    """llama.cpp's /tokenize answers ``tokens`` (none for a vLLM-style request): the prompt
    is templated by /apply-template, then its text tokenized."""
    server.scripts["/tokenize"] = [answer(body={"tokens": []}), answer(body={"tokens": [1, 9, 9]})]
    server.scripts["/apply-template"] = [answer(body={"prompt": "<|user|>q<|assistant|>"})]
    assert await endpoint.count_prompt_tokens(stage_at(server), "q", 10) == 3
    assert [path for path, _ in server.requests] == ["/tokenize", "/apply-template", "/tokenize"]
