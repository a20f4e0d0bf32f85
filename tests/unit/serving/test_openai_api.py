"""The OpenAI-compatible API (a2r_graph.serving.openai_api): reading requests (model-name options,
the question, sampling parameters), the error statuses, the streamed reply, and the routes
as the official ``openai`` client sees them (over a scripted runner, in-process)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from a2r_graph.serving.openai_api import (
    OpenAIError,
    ThinkSplitter,
    failure_error,
    parse_options,
    parse_request,
    resolve_model,
    routes,
)
from a2r_graph.serving.runners import RunFailure, Token, _refused, merged
from tests.fakes import PRESETS, RUN_OUTPUT, ScriptedRunner, fake_deployment

OUTPUT = RUN_OUTPUT


@pytest.fixture(autouse=True)
def deployment(monkeypatch):
    return fake_deployment(monkeypatch)


def body(**fields) -> dict:
    return {"model": "a2r", "messages": [{"role": "user", "content": "What is 2+3?"}], **fields}


def test_options_ride_in_the_model_name():
    assert parse_options("n=8, min_paths=6,synthesizer.temperature=0.7,overflow=drop", "m") == {
        "n": 8,
        "min_paths": 6,
        "overflow": "drop",
        "synthesizer": {"temperature": 0.7},
    }
    assert parse_options("explorer.model=Qwen/Qwen3-4B,explorer.seed=null", "m") == {
        "explorer": {"model": "Qwen/Qwen3-4B", "seed": None}
    }
    preset, options = resolve_model("wide:n=4", PRESETS)
    assert preset.name == "wide" and options == {"n": 4}
    assert resolve_model("wide-id", PRESETS) == (PRESETS[1], {})


@pytest.mark.parametrize(
    ("model", "status", "message"),
    [
        ("a2r:n=0", 400, "model 'a2r:n=0': n: Input should be greater than or equal to 1"),
        ("a2r:nn=3", 400, "nn: unknown field"),
        ("a2r:explorer.api_key_env=DB_PASSWORD", 400, "explorer.api_key_env: set by the server's"),
        ("a2r:prompts_dir=/etc", 400, "prompts_dir: set by the server's deployment"),
        ("a2r:n", 400, "'n' is not an option; write PRESET:KEY=VALUE"),
        ("gpt-4o", 404, "The model 'gpt-4o' does not exist: use one of a2r, wide"),
    ],
)
def test_bad_model_names_say_what_is_wrong(model, status, message):
    with pytest.raises(OpenAIError) as refused:
        resolve_model(model, PRESETS)
    assert refused.value.status == status and refused.value.param == "model"
    assert message in refused.value.message


def test_the_question_is_the_last_user_message():
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 1+1?"},
        {"role": "assistant", "content": "2"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "2+3?"}],
        },
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    request = parse_request({"model": "a2r", "messages": messages})
    assert request.question == "What is\n2+3?"
    assert request.options == {} and not request.stream


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"messages": [{"role": "user", "content": "  "}]}, "messages[0].content", "is blank"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages", "no user message"),
        ({"messages": []}, "messages", "at least one user message"),
        ({"model": None}, "model", "model: required"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
            "only text parts",
        ),
        ({"n": 2}, "n", "A2R returns one choice"),
        ({"temperature": 3}, "temperature", "synthesizer's temperature"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"tool_choice": "required"}, "tool_choice", "never calls tools"),
        ({"response_format": {"type": "json_object"}}, "response_format", "in text"),
        ({"logprobs": True}, "logprobs", "not available"),
        ({"top_logprobs": 3}, "top_logprobs", "not available"),
        ({"messages": [5, {"role": "user", "content": "q"}]}, "messages[0]", "with a role"),
        ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage", "true or"),
        ({"stream": "yes"}, "stream", "true or false"),
        ({"a2r": {"explorer": {"base_url": 5}}}, "a2r", "a2r.explorer.base_url"),
        ({"a2r": [1]}, "a2r", "must be an object"),
    ],
)
def test_bad_requests_name_the_field(fields, param, message):
    with pytest.raises(OpenAIError) as refused:
        parse_request(body(**fields))
    assert refused.value.status == 400 and refused.value.param == param
    assert message in refused.value.message
    assert refused.value.body()["error"]["type"] == "invalid_request_error"


def test_sampling_parameters_set_the_synthesizer_and_a2r_options_override():
    request = parse_request(
        body(
            temperature=0.2,
            top_p=0.9,
            max_completion_tokens=64,
            seed=7,
            stop=["Observation:"],  # accepted and ignored
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            tool_choice="auto",
            a2r={"n": 2, "synthesizer": {"temperature": 0.5}},
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert request.options == {
        "n": 2,
        "explorer": {"seed": 7},
        "synthesizer": {"temperature": 0.5, "top_p": 0.9, "max_tokens": 64, "seed": 7},
    }
    assert request.stream and request.include_usage
    # the preset's fields survive a request's other fields of the same stage
    assert merged(PRESETS[1].context, {"synthesizer": {"max_tokens": 9}}) == {
        "n": 8,
        "synthesizer": {"temperature": 0.7, "max_tokens": 9},
    }


@pytest.mark.parametrize(
    ("error", "message", "status", "code"),
    [
        ("ModelRequestError", "rejected with HTTP 400", 502, "model_request_rejected"),
        ("MalformedReplyError", "not JSON", 502, "malformed_model_reply"),
        (
            "EndpointUnavailableError",
            "failed after 4 attempt(s): APIConnectionError: x",
            503,
            "model_server_unavailable",
        ),
        (
            "EndpointTimeoutError",
            "failed after 4 attempt(s): APITimeoutError: x",
            504,
            "model_server_timeout",
        ),
        (
            "EndpointTimeoutError",
            "failed after 1 attempt(s): TimeoutError: TimeoutError",
            504,
            "model_server_timeout",
        ),
        ("NotEnoughPathsError", "only 1 explorer path(s) succeeded", 503, "not_enough_paths"),
        ("ContextOverflowError", "does not fit", 400, "context_length_exceeded"),
        ("KeyError", "'x'", 500, None),
    ],
)
def test_run_failures_map_to_statuses(error, message, status, code):
    mapped = failure_error(RunFailure.named(error, message))
    assert (mapped.status, mapped.code) == (status, code)
    assert message in mapped.message


@pytest.mark.parametrize(
    ("refused", "status", "code"), [(422, 400, "invalid_value"), (404, 404, "model_not_found")]
)
def test_a_run_the_server_refused_maps_to_its_status(refused, status, code):
    request = httpx.Request("POST", "http://api/runs/stream")
    response = httpx.Response(refused, json={"detail": "input.question: blank"}, request=request)
    error = httpx.HTTPStatusError("refused", request=request, response=response)
    mapped = failure_error(_refused(error))
    assert (mapped.status, mapped.code) == (status, code)
    assert "input.question: blank" in mapped.message


@pytest.mark.parametrize(
    ("pieces", "reasoning", "answer"),
    [
        (
            ["<thi", "nk>plan ", "a</th", "ink>\n\nThe ", "answer \\boxed{5}"],
            "plan a",
            "The answer \\boxed{5}",
        ),
        (["The answer", " is \\boxed{5}"], "", "The answer is \\boxed{5}"),
        (["  <think>never closed"], "never closed", ""),
        (["<b>bold</b>"], "", "<b>bold</b>"),
    ],
)
def test_inline_thinking_streams_as_reasoning(pieces, reasoning, answer):
    splitter = ThinkSplitter()
    tokens = [token for piece in pieces for token in splitter.feed(piece)] + splitter.flush()
    assert "".join(t.text for t in tokens if t.reasoning) == reasoning
    assert "".join(t.text for t in tokens if not t.reasoning) == answer


def client_for(runner: ScriptedRunner) -> openai.OpenAI:
    http = TestClient(Starlette(routes=routes(runner)))
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key="k", http_client=http, max_retries=0
    )


def test_the_openai_client_gets_the_answer_and_the_runs_usage():
    runner = ScriptedRunner(PRESETS)
    client = client_for(runner)
    reply = client.chat.completions.create(
        model="wide:n=4",
        messages=[{"role": "user", "content": "What is 2+3?"}],
        max_tokens=100,
    )
    assert reply.choices[0].message.content == "Both agree. \\boxed{5}"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        50,
        50,
        100,
    )
    assert reply.usage.model_extra["cost"] == 0.003
    summary = reply.model_extra["a2r"]
    assert summary["boxed_answer"] == "5" and summary["usage"]["explore"]["calls"] == 2
    assert summary["paths"][1] == {"index": 1, "boxed": None, "error": "HTTP 500"}
    assert "long trace" not in reply.model_dump_json()  # explorer traces stay out
    # the preset's context, the model name's options, then the request's parameters
    assert runner.runs == [
        ("wide", "What is 2+3?", {"n": 4, "synthesizer": {"temperature": 0.7, "max_tokens": 100}})
    ]
    assert [model.id for model in client.models.list()] == ["a2r", "wide"]


def test_streaming_sends_the_synthesizers_tokens_then_usage():
    client = client_for(ScriptedRunner(PRESETS))
    chunks = list(
        client.chat.completions.create(
            model="a2r",
            messages=[{"role": "user", "content": "What is 2+3?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Both agree. \\boxed{5}"
    assert chunks[0].choices[0].delta.role == "assistant"
    reasoning = [
        c.choices[0].delta.model_extra.get("reasoning_content") for c in chunks if c.choices
    ]
    assert "think" in reasoning
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].model_extra["a2r"]["boxed_answer"] == "5"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 100
    assert all(c.usage is None for c in chunks[:-1])


def test_a_reply_that_did_not_stream_is_sent_whole():
    client = client_for(ScriptedRunner(PRESETS, tokens=[]))
    chunks = list(
        client.chat.completions.create(
            model="a2r", messages=[{"role": "user", "content": "q"}], stream=True
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == OUTPUT["answer"]
    )
    assert all(c.usage is None for c in chunks)  # no usage chunk unless asked for


def test_failures_are_openai_errors():
    failure = RunFailure.named(
        "EndpointUnavailableError",
        "synthesizer endpoint ... failed after 4 attempt(s): APIConnectionError: down",
    )
    client = client_for(ScriptedRunner(PRESETS, failure))
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="a2r", messages=[{"role": "user", "content": "q"}])
    assert failed.value.status_code == 503
    assert failed.value.body["code"] == "model_server_unavailable"
    assert "APIConnectionError: down" in failed.value.body["message"]
    stream = client.chat.completions.create(
        model="a2r", messages=[{"role": "user", "content": "q"}], stream=True
    )
    with pytest.raises(openai.APIError, match="APIConnectionError: down"):
        list(stream)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    assert unknown.value.body["code"] == "model_not_found"


def test_a_context_the_deployment_refuses_is_a_400_before_anything_runs(monkeypatch):
    runner = ScriptedRunner(PRESETS)
    http = TestClient(Starlette(routes=routes(runner)))
    refused = http.post(
        "/v1/chat/completions",
        json=body(model="a2r:n=2,min_paths=3"),
    )
    assert refused.status_code == 400
    assert "min_paths (3) must be <= n (2)" in refused.json()["error"]["message"]
    refused = http.post(
        "/v1/chat/completions",
        json=body(a2r={"explorer": {"base_url": "http://attacker.example/v1"}}),
    )
    assert refused.status_code == 400
    assert "not an endpoint this server allows" in refused.json()["error"]["message"]
    not_json = http.post(
        "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400 and json.loads(not_json.text)["error"]["param"] is None
    not_an_object = http.post("/v1/chat/completions", json=[body()]).json()["error"]
    assert not_an_object["message"] == "the request body must be a JSON object"
    assert not_an_object["param"] is None and not_an_object["code"] is None
    assert runner.runs == []


def test_a_quiet_stream_gets_keepalives_and_keeps_its_events(monkeypatch):
    """While nothing streams (the explorers run), SSE comments keep proxies from closing the
    connection; the chunks around them and a late failure still come."""
    import asyncio

    from a2r_graph.serving import openai_api

    class Slow(ScriptedRunner):
        async def stream(self, preset, question, context) -> AsyncIterator:
            yield Token("early")
            await asyncio.sleep(0.2)
            yield Token(" late")
            raise RunFailure.named("NotEnoughPathsError", "late")

    monkeypatch.setattr(openai_api, "KEEPALIVE_S", 0.02)
    http = TestClient(Starlette(routes=routes(Slow(PRESETS))))
    text = http.post("/v1/chat/completions", json=body(stream=True)).text
    lines = text.splitlines()
    assert any(line.startswith(": ") for line in lines)  # a comment, ignored by clients
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data")]
    deltas = [event["choices"][0]["delta"] for event in events[:-1]]
    assert "".join(delta.get("content") or "" for delta in deltas) == "early late"
    assert events[-1]["error"]["code"] == "not_enough_paths"
