"""ChatVLLM parses vLLM-shaped responses (served here by an httpx mock transport)."""

import asyncio
import json

import httpx
import pytest
from pydantic import SecretStr

from a2r_graph.chat_models import ChatVLLM, vllm_chat_model
from a2r_graph.context import StageConfig
from a2r_graph.errors import MalformedReplyError


def completion_body(message, finish_reason="stop"):
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "served-name",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def model_answering(handler):
    return ChatVLLM(
        model="m",
        base_url="http://vllm.test/v1",
        api_key="EMPTY",
        max_retries=0,
        http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_reasoning_field_is_kept(field):
    body = completion_body({"role": "assistant", "content": "\\boxed{2}", field: "1+1=2"})
    message = await model_answering(lambda request: httpx.Response(200, json=body)).ainvoke("q")
    assert message.text == "\\boxed{2}"
    assert message.additional_kwargs["reasoning_content"] == "1+1=2"
    assert message.usage_metadata["input_tokens"] == 11
    assert message.usage_metadata["output_tokens"] == 7
    assert message.response_metadata["finish_reason"] == "stop"


async def test_streamed_reasoning_is_kept():
    deltas = [
        {"role": "assistant", "reasoning": "think "},
        {"reasoning": "more"},
        {"content": "ok"},
    ]
    chunks = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        for delta in deltas
    ]
    chunks.append(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    )
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"

    def handler(request):
        assert json.loads(request.content)["stream_options"] == {"include_usage": True}
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})

    model = model_answering(handler).model_copy(update={"stream_usage": True})
    merged = None
    async for chunk in model.astream("q"):
        merged = chunk if merged is None else merged + chunk
    assert merged.text == "ok"
    assert merged.additional_kwargs["reasoning_content"] == "think more"
    assert merged.usage_metadata["output_tokens"] == 4


def test_clients_are_shared_per_endpoint_and_event_loop_not_built_per_call():
    """Catches: a client built per call (a connection pool per request), or one shared
    across event loops: a second ``asyncio.run`` in a process would reuse connections of the
    closed loop ("Event loop is closed"; tests/integration/test_r2reasoner_llamacpp.py runs
    ``as_tool`` then ``a2r ask`` in one process against real servers)."""
    stage = StageConfig(model="m")

    async def clients() -> list:
        return [
            vllm_chat_model(stage, 60),
            vllm_chat_model(stage.model_copy(update={"temperature": 0}), 60),
            vllm_chat_model(StageConfig(model="other"), 60),
        ]

    first, second = asyncio.run(clients()), asyncio.run(clients())
    assert first[0] is first[1] and first[0] is not first[2]
    assert first[0] is not second[0]
    assert first[0].http_async_client is not second[0].http_async_client


def test_missing_api_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("MY_VLLM_KEY", raising=False)
    with pytest.raises(ValueError, match="api_key_env names 'MY_VLLM_KEY', which is not set"):
        vllm_chat_model(StageConfig(model="m", api_key_env="MY_VLLM_KEY"), 60)


# -- malformed replies: MalformedReplyError saying what was wrong, never a raw IndexError ------

REPLY = completion_body({"role": "assistant", "content": "\\boxed{2}"})
MALFORMED_BODIES = {
    "html page": (
        {"text": "<html>502 Bad Gateway</html>", "headers": {"content-type": "text/html"}},
        "the reply is not a JSON object: <html>502 Bad Gateway</html>",
    ),
    "empty body": ({"text": ""}, "the reply is not a JSON object: (empty body)"),
    "invalid json": (
        {"text": '{"choices": [', "headers": {"content-type": "application/json"}},
        "the reply is not valid JSON",
    ),
    "json array": ({"json": [1, 2]}, "the reply is not a JSON object: [1, 2]"),
    "empty choices": ({"json": {**REPLY, "choices": []}}, "the reply has no `choices`: []"),
    "no choices": ({"json": {"id": "c1", "usage": REPLY["usage"]}}, "has no `choices`: None"),
    "null message": (
        {"json": {**REPLY, "choices": [{"index": 0, "message": None, "finish_reason": "stop"}]}},
        "choices[0].message is not a message object",
    ),
    "choice not an object": ({"json": {**REPLY, "choices": ["x"]}}, "choices[0].message"),
    "content not text": (
        {"json": completion_body({"role": "assistant", "content": 5})},
        "choices[0].message.content is not text: 5",
    ),
    "string tokens": (
        {"json": {**REPLY, "usage": {"prompt_tokens": "n/a", "completion_tokens": 7}}},
        "usage.prompt_tokens is not a token count: n/a",
    ),
    "null tokens": (
        {"json": {**REPLY, "usage": {"prompt_tokens": 3, "completion_tokens": None}}},
        "usage.completion_tokens is not a token count: None",
    ),
    "usage not an object": ({"json": {**REPLY, "usage": [3, 4]}}, "`usage` is not an object"),
    "error object": (
        {"json": {"error": {"message": "engine overloaded"}, "choices": None}},
        "the server answered 200 with an error: {'message': 'engine overloaded'}",
    ),
}


@pytest.mark.parametrize("kind", MALFORMED_BODIES)
async def test_malformed_reply_is_a_malformed_reply_error(kind):
    response, message = MALFORMED_BODIES[kind]
    model = model_answering(lambda request: httpx.Response(200, **response))
    with pytest.raises(MalformedReplyError) as raised:
        await model.ainvoke("q")
    assert message in str(raised.value)


def sse(*events):
    text = "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)
    return text + "data: [DONE]\n\n"


def chunk(delta, finish_reason=None, **extra):
    choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": choices, **extra}  # fmt: skip


USAGE_CHUNK = {**chunk({}), "choices": [], "usage": REPLY["usage"]}
MALFORMED_STREAMS = {
    "no usage": (
        sse(chunk({"role": "assistant", "content": "ok"}), chunk({}, "stop")),
        "the streamed reply ended without `usage`",
    ),
    "nothing but [DONE]": (sse(), "the streamed reply carried no choice"),
    "only usage": (sse(USAGE_CHUNK), "the streamed reply carried no choice"),
    "null deltas": (sse(chunk(None), USAGE_CHUNK), "the streamed reply carried no choice"),
    "invalid json chunk": (sse(chunk({"content": "o"}), '{"choices": ['), "not valid JSON"),
    "chunk not an object": (sse("[1, 2]"), "the reply could not be read"),
    "choice not an object": (sse({**chunk({}), "choices": ["x"]}), "choice holds no delta"),
    "string tokens": (
        sse(chunk({"content": "ok"}, "stop"), {**USAGE_CHUNK, "usage": {"prompt_tokens": "a"}}),
        "usage.prompt_tokens is not a token count: a",
    ),
    "html page": ("<html>502</html>", "the streamed reply carried no choice"),
}


@pytest.mark.parametrize("kind", MALFORMED_STREAMS)
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the SDK's, on garbage
async def test_malformed_stream_is_a_malformed_reply_error(kind):
    text, message = MALFORMED_STREAMS[kind]
    headers = {"content-type": "text/html" if text.startswith("<") else "text/event-stream"}
    model = model_answering(lambda request: httpx.Response(200, text=text, headers=headers))
    model = model.model_copy(update={"stream_usage": True, "streaming": True})
    with pytest.raises(MalformedReplyError) as raised:
        await model.ainvoke("q")
    assert message in str(raised.value)


async def test_reply_previews_never_show_the_api_key():
    key = "sk-secret-key-1234"
    page = f"<html>proxy error; you sent Authorization: Bearer {key}</html>"
    model = model_answering(lambda request: httpx.Response(200, text=page)).model_copy(
        update={"openai_api_key": SecretStr(key)}
    )
    with pytest.raises(MalformedReplyError) as raised:
        await model.ainvoke("q")
    assert key not in str(raised.value) and "Bearer ***" in str(raised.value)
