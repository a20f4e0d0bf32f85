"""The chat model behind each stage: an OpenAI-compatible (vLLM) endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from a2r_graph.context import StageConfig
from a2r_graph.errors import A2RError, ConfigurationError, MalformedReplyError

ChatModelFactory = Callable[[StageConfig, float], BaseChatModel]
"""Builds the chat model for a stage's endpoint, given the per-request timeout in seconds."""

REASONING_FIELDS = ("reasoning", "reasoning_content")  # vLLM >= 0.10 / older vLLM, DeepSeek
READ_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)
"""What the OpenAI SDK and LangChain raise on a reply they cannot read (JSONDecodeError and
pydantic's ValidationError are ValueErrors); ChatVLLM turns them into MalformedReplyError."""
_PREVIEW_CHARS = 200


def _reasoning_of(message: dict[str, Any] | None) -> str | None:
    for field in REASONING_FIELDS:
        if isinstance(value := (message or {}).get(field), str) and value:
            return value
    return None


class ChatVLLM(ChatOpenAI):
    """``ChatOpenAI`` that keeps the reasoning text a ``--reasoning-parser`` server returns.

    ChatOpenAI targets OpenAI's API and drops vLLM's ``reasoning`` (older releases:
    ``reasoning_content``) field; this puts it in ``additional_kwargs["reasoning_content"]``
    for whole responses and streamed chunks alike.

    A reply it cannot read (not JSON, invalid JSON, no ``choices``, a null message,
    non-integer token counts, a stream with no chunk, or without the ``usage`` it asked for)
    raises ``MalformedReplyError`` saying what was wrong, never an IndexError or a
    JSONDecodeError: a server fault, which ``a2r_graph.calls`` retries.
    """

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> ChatResult:
        raw = _reply_dict(response, self._secret())
        _check_completion(raw, self._secret())
        result = super()._create_chat_result(response, generation_info)
        for generation, choice in zip(result.generations, raw["choices"], strict=False):
            if reasoning := _reasoning_of(choice["message"]):
                generation.message.additional_kwargs["reasoning_content"] = reasoning
        return result

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict, default_chunk_class: type, base_generation_info: dict | None
    ) -> ChatGenerationChunk | None:
        _check_chunk(chunk, self._secret())
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        choices = chunk.get("choices") or [{}]
        reasoning = _reasoning_of(choices[0].get("delta"))
        if generation is not None and reasoning:
            generation.message.additional_kwargs["reasoning_content"] = reasoning
        return generation

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        except A2RError:
            raise
        except READ_ERRORS as error:
            raise _unreadable(error, self._secret()) from error

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        usage_asked = self._should_stream_usage(**kwargs)
        answered, usage_seen = False, False
        try:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                answered = answered or _carries_a_choice(chunk)
                usage_seen = usage_seen or bool(getattr(chunk.message, "usage_metadata", None))
                yield chunk
        except A2RError:
            raise
        except READ_ERRORS as error:
            raise _unreadable(error, self._secret()) from error
        if not answered:
            raise MalformedReplyError(
                "the streamed reply carried no choice (no text, no finish_reason): not an "
                "OpenAI-compatible completion stream"
            )
        if usage_asked and not usage_seen:
            raise MalformedReplyError(
                "the streamed reply ended without `usage` (asked for with "
                "stream_options.include_usage): the stream was cut short, or the server does "
                "not report token usage"
            )

    def _secret(self) -> str | None:
        """The API key, to keep it out of reply previews in error messages."""
        secret = self.openai_api_key
        key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        return key if isinstance(key, str) and key not in ("", "EMPTY") else None


def _carries_a_choice(chunk: ChatGenerationChunk) -> bool:
    """Whether a streamed chunk came from a choice: text, reasoning or a finish reason."""
    return bool(
        chunk.text
        or chunk.message.additional_kwargs.get("reasoning_content")
        or (chunk.generation_info or {}).get("finish_reason")
    )


def _preview(value: Any, secret: str | None) -> str:
    """``value`` for an error message: the text or repr, cut short, the API key hidden."""
    text = value if isinstance(value, str) else repr(value)
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "..."


def _unreadable(error: BaseException, secret: str | None) -> MalformedReplyError:
    if isinstance(error, json.JSONDecodeError):
        return MalformedReplyError(
            f"the reply is not valid JSON ({error.msg}, char {error.pos}): "
            f"{_preview(error.doc, secret) or '(empty body)'}"
        )
    return MalformedReplyError(
        f"the reply could not be read ({type(error).__name__}: {_preview(str(error), secret)})"
    )


def _reply_dict(response: Any, secret: str | None) -> dict[str, Any]:
    if isinstance(response, dict):
        return response
    if isinstance(response, openai.BaseModel):
        return response.model_dump(warnings=False)
    # the SDK hands over the text when the body is not JSON (e.g. an HTML error page)
    shown = _preview(response, secret) if response != "" else "(empty body)"
    raise MalformedReplyError(f"the reply is not a JSON object: {shown}")


def _check_completion(raw: dict[str, Any], secret: str | None) -> None:
    """A whole reply has a non-empty ``choices`` of message objects and readable usage."""
    if problem := _completion_problem(raw):
        what, value = problem
        raise MalformedReplyError(f"{what}: {_preview(value, secret)}")


def _completion_problem(raw: dict[str, Any]) -> tuple[str, Any] | None:
    if raw.get("error"):
        return "the server answered 200 with an error", raw["error"]
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        return "the reply has no `choices`", choices
    for i, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            return f"choices[{i}].message is not a message object", choice
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            return f"choices[{i}].message.content is not text", content
    return _usage_problem(raw.get("usage"))


def _check_chunk(chunk: Any, secret: str | None) -> None:
    """A streamed chunk is an object whose choices carry delta objects, with readable usage."""
    if problem := _chunk_problem(chunk):
        what, value = problem
        raise MalformedReplyError(f"{what}: {_preview(value, secret)}")


def _chunk_problem(chunk: Any) -> tuple[str, Any] | None:
    if not isinstance(chunk, dict):
        return "a streamed chunk is not a JSON object", chunk
    choices = chunk.get("choices")
    if choices is not None and not isinstance(choices, list):
        return "a streamed chunk's `choices` is not a list", choices
    for choice in choices or []:
        if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict | None):
            return "a streamed chunk's choice holds no delta object", choice
    return _usage_problem(chunk.get("usage"))


def _usage_problem(usage: Any) -> tuple[str, Any] | None:
    if not usage:
        return None  # no usage at all: the caller decides (a2r_graph.calls: MissingUsageError)
    if not isinstance(usage, dict):
        return "`usage` is not an object", usage
    for field in ("prompt_tokens", "completion_tokens"):
        value = usage.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"usage.{field} is not a token count", value
    return None


def vllm_chat_model(stage: StageConfig, timeout_s: float) -> BaseChatModel:
    """The default factory: one shared client per endpoint and event loop, sampling set per
    call. Per loop, because a connection pool belongs to the loop that opened it: a second
    ``asyncio.run`` in the same process (a script, a notebook, ``a2r ask`` after a test)
    would otherwise reuse connections of a closed loop."""
    key = (stage.url, stage.model, api_key_for(stage), timeout_s)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _client(*key)
    clients = _per_loop.setdefault(loop, {})
    if key not in clients:
        # httpx's own client, proxies from the environment as usual (for the sync client
        # too: no socket options, or langchain-openai warns that its transport hides them)
        clients[key] = _client(
            *key, http_async_client=openai.DefaultAsyncHttpxClient(), http_socket_options=()
        )
    return clients[key]


def api_key_for(stage: StageConfig) -> str:
    """The key from the variable ``stage.api_key_env`` names ("EMPTY" without one)."""
    if not stage.api_key_env:
        return "EMPTY"  # what vLLM expects when started without --api-key
    api_key = os.environ.get(stage.api_key_env, "")
    if not api_key:
        raise ConfigurationError(
            f"api_key_env names {stage.api_key_env!r}, which is not set: export it, "
            "or set api_key_env to None for a server without --api-key"
        )
    return api_key


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, ChatVLLM]] = (
    weakref.WeakKeyDictionary()
)


def _client(base_url: str, model: str, api_key: str, timeout_s: float, **http: Any) -> ChatVLLM:
    return ChatVLLM(
        base_url=base_url,
        model=model,
        api_key=api_key,
        timeout=timeout_s,
        max_retries=0,  # retries are ours (a2r_graph.calls), with backoff and a 4xx/5xx split
        stream_usage=True,
        **http,
    )
