"""The chat model behind each stage: an OpenAI-compatible (vLLM) endpoint."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI

from a2r_graph.context import StageConfig
from a2r_graph.errors import ConfigurationError

ChatModelFactory = Callable[[StageConfig, float], BaseChatModel]
"""Builds the chat model for a stage's endpoint, given the per-request timeout in seconds."""

REASONING_FIELDS = ("reasoning", "reasoning_content")  # vLLM >= 0.10 / older vLLM, DeepSeek


def _reasoning_of(message: dict[str, Any] | None) -> str | None:
    for field in REASONING_FIELDS:
        if (message or {}).get(field):
            return message[field]
    return None


class ChatVLLM(ChatOpenAI):
    """``ChatOpenAI`` that keeps the reasoning text a ``--reasoning-parser`` server returns.

    ChatOpenAI targets OpenAI's API and drops vLLM's ``reasoning`` (older releases:
    ``reasoning_content``) field; this puts it in ``additional_kwargs["reasoning_content"]``
    for whole responses and streamed chunks alike.
    """

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        raw = response if isinstance(response, dict) else response.model_dump()
        for generation, choice in zip(result.generations, raw.get("choices") or [], strict=False):
            if reasoning := _reasoning_of(choice.get("message")):
                generation.message.additional_kwargs["reasoning_content"] = reasoning
        return result

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict, default_chunk_class: type, base_generation_info: dict | None
    ) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        choices = chunk.get("choices") or [{}]
        reasoning = _reasoning_of(choices[0].get("delta"))
        if generation is not None and reasoning:
            generation.message.additional_kwargs["reasoning_content"] = reasoning
        return generation


def vllm_chat_model(stage: StageConfig, timeout_s: float) -> BaseChatModel:
    """The default factory: one shared client per endpoint, sampling set per call."""
    return _cached_client(stage.url, stage.model, api_key_for(stage), timeout_s)


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


@lru_cache(maxsize=64)
def _cached_client(base_url: str, model: str, api_key: str, timeout_s: float) -> ChatVLLM:
    return ChatVLLM(
        base_url=base_url,
        model=model,
        api_key=api_key,
        timeout=timeout_s,
        max_retries=0,  # retries are ours (a2r_graph.calls), with backoff and a 4xx/5xx split
        stream_usage=True,
    )
