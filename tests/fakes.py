"""Fakes for unit tests of graph logic: langchain-core's fake chat model, scripted."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from a2r_graph.context import A2RContext, StageConfig
from a2r_graph.serving.runners import Finished, Preset, RunFailure, Token


def reply(
    content: str,
    *,
    reasoning: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 20,
    finish_reason: str = "stop",
    logprobs: dict | None = None,
) -> AIMessage:
    """An AIMessage shaped like ChatVLLM's: server usage, optional reasoning field, and
    optional OpenAI-style ``logprobs`` (see ``token_logprobs``)."""
    return AIMessage(
        content=content,
        additional_kwargs={"reasoning_content": reasoning} if reasoning else {},
        response_metadata={"finish_reason": finish_reason}
        | ({"logprobs": logprobs} if logprobs is not None else {}),
        usage_metadata={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    )


def token_logprobs(*candidates: list[float]) -> dict:
    """An OpenAI-style ``logprobs`` object: per generated token, its top-k candidates'
    logprobs (the first is the sampled token)."""
    return {
        "content": [
            {
                "token": f"t{i}",
                "logprob": top[0],
                "top_logprobs": [{"token": f"c{j}", "logprob": lp} for j, lp in enumerate(top)],
            }
            for i, top in enumerate(candidates)
        ]
    }


class Hang:
    """A script item: the call never answers (for ``seconds``), like a hung server."""

    def __init__(self, seconds: float = 3600.0):
        self.seconds = seconds


class ScriptedChatModel(GenericFakeChatModel):
    """Replies from a script in call order (an exception in the script is raised, a ``Hang``
    waits); records every prompt and the request parameters it came with."""

    calls: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.calls.append((messages[-1].text, kwargs))
        return self._result(next(self.messages))

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.calls.append((messages[-1].text, kwargs))
        item = next(self.messages)
        if isinstance(item, Hang):
            await asyncio.sleep(item.seconds)
            raise TimeoutError("the fake server never answered")
        return self._result(item)

    @staticmethod
    def _result(item: AIMessage | BaseException) -> ChatResult:
        if isinstance(item, BaseException):
            raise item
        return ChatResult(generations=[ChatGeneration(message=item)])


class ToolCallingFake(ScriptedChatModel):
    """A scripted agent model that accepts ``bind_tools`` (and remembers the tool names)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:
        self.__dict__["bound_tools"] = [tool.name for tool in tools]
        return self


def scripted(*items: AIMessage | BaseException | Hang) -> ScriptedChatModel:
    return ScriptedChatModel(messages=iter(items))


def factory(explorer: ScriptedChatModel, synthesizer: ScriptedChatModel):
    """A ChatModelFactory that maps the context's two model names onto the fakes."""

    def chat_model(stage: StageConfig, timeout_s: float) -> ScriptedChatModel:
        return {"explorer-model": explorer, "synthesizer-model": synthesizer}[stage.model]

    return chat_model


def fake_deployment(monkeypatch: Any) -> Any:
    """A server's environment of fake models: no A2R_* but both stages' model names."""
    for name in list(os.environ):
        if name.startswith("A2R_"):
            monkeypatch.delenv(name)
    for stage in ("EXPLORER", "SYNTHESIZER"):
        monkeypatch.setenv(f"A2R_{stage}__MODEL", f"{stage.lower()}-model")
    return monkeypatch


REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def connection_error() -> openai.APIConnectionError:
    return openai.APIConnectionError(request=REQUEST)


def explorer_replies(n: int) -> list[AIMessage]:
    """``n`` explorer replies: path i answers ``\\boxed{i}`` after a trace."""
    return [
        reply(
            f"<think>trace {i}</think>answer {i}: \\boxed{{{i}}}",
            input_tokens=100 + i,
            output_tokens=10 * (i + 1),
        )
        for i in range(n)
    ]


def make_context(**overrides: Any) -> A2RContext:
    fields: dict[str, Any] = {
        "explorer": {"model": "explorer-model"},
        # A known window: no server is asked for it.
        "synthesizer": {"model": "synthesizer-model", "context_window": 32768},
        "retry_initial_wait_s": 0.0,
        "retry_max_wait_s": 0.0,
        # The synthesis itself (the vote modes' tests choose theirs).
        "synthesis_mode": "synthesize",
    }
    fields.update(overrides)
    return A2RContext(**fields)


RUN_OUTPUT: dict[str, Any] = {
    "question": "What is 2+3?",
    "answer": "Both agree. \\boxed{5}",
    "boxed_answer": "5",
    "paths": [
        {"index": 0, "boxed": "5", "error": None, "trace": "long trace", "answer": "a"},
        {"index": 1, "boxed": None, "error": "HTTP 500", "trace": "", "answer": ""},
    ],
    "synthesis": {"trace": "thinking", "finish_reason": "stop"},
    "usage": {
        "explore": {"calls": 2, "input_tokens": 10, "output_tokens": 30, "cost": 0.001},
        "synthesize": {"calls": 1, "input_tokens": 40, "output_tokens": 20, "cost": 0.002},
        "total": {"calls": 3, "input_tokens": 50, "output_tokens": 50, "cost": 0.003},
    },
}
"""What the fake runner's runs return: an A2R output with one failed path."""


PRESETS = [
    Preset("a2r", "a2r-id", {}),
    Preset("wide", "wide-id", {"n": 8, "synthesizer": {"temperature": 0.7}}),
]
"""A server's presets: the default and an assistant with its own context."""


class ScriptedRunner:
    """A runner (``a2r_graph.serving.runners``) over ``presets`` whose runs end with ``RUN_OUTPUT``
    (streaming ``tokens``) or ``failure``."""

    def __init__(
        self,
        presets: list[Preset],
        failure: RunFailure | None = None,
        tokens: list[Token] | None = None,
    ) -> None:
        self._presets, self.failure, self.tokens, self.runs = presets, failure, tokens, []

    async def presets(self) -> list[Preset]:
        return self._presets

    async def invoke(self, preset: Preset, question: str, context: dict) -> dict:
        self.runs.append((preset.name, question, context))
        if self.failure:
            raise self.failure
        return RUN_OUTPUT

    async def stream(self, preset: Preset, question: str, context: dict) -> AsyncIterator:
        self.runs.append((preset.name, question, context))
        for token in (
            self.tokens
            if self.tokens is not None
            else [Token("think", True), Token("Both agree. "), Token("\\boxed{5}")]
        ):
            yield token
        if self.failure:
            raise self.failure
        yield Finished(RUN_OUTPUT)


SERVER_KEY = {"authorization": "Bearer sk-test"}
"""The key of the fake deployments' ``a2r serve`` (``A2R_SERVER_API_KEY=sk-test``)."""


def openai_chat(http: Any, model: str, question: str, **body: Any) -> dict[str, Any]:
    """A chat completion from an ``a2r serve`` app's ``/v1``: its status and JSON body."""
    messages = [{"role": "user", "content": question}]
    response = http.post(
        "/v1/chat/completions",
        headers=SERVER_KEY,
        json={"model": model, "messages": messages, **body},
    )
    return {"status": response.status_code, **response.json()}


def openai_stream(http: Any, model: str, question: str) -> list[list[dict[str, Any]]]:
    """The ``choices`` of each chunk a streamed chat completion sent."""
    body = {"model": model, "messages": [{"role": "user", "content": question}], "stream": True}
    with http.stream("POST", "/v1/chat/completions", headers=SERVER_KEY, json=body) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    return [json.loads(line[6:])["choices"] for line in lines]
