"""ChatVLLM parses vLLM-shaped responses (served here by an httpx mock transport)."""

import json

import httpx
import pytest

from a2r_graph.chat_models import ChatVLLM, vllm_chat_model
from a2r_graph.context import StageConfig


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


def test_clients_are_shared_per_endpoint_not_built_per_call():
    stage = StageConfig(model="m")
    assert vllm_chat_model(stage, 60) is vllm_chat_model(
        stage.model_copy(update={"temperature": 0}), 60
    )
    assert vllm_chat_model(stage, 60) is not vllm_chat_model(StageConfig(model="other"), 60)


def test_missing_api_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("MY_VLLM_KEY", raising=False)
    with pytest.raises(ValueError, match="api_key_env names 'MY_VLLM_KEY', which is not set"):
        vllm_chat_model(StageConfig(model="m", api_key_env="MY_VLLM_KEY"), 60)
