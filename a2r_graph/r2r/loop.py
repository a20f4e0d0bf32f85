"""The routed loop's step: the SLM streams tokens from the prefix until the router flags one;
the stream is closed there (the server stops generating), and the LLM writes that position
(``llm_tokens_per_switch`` tokens) from the same prefix. Each model call is retried on
transient errors, traced (a span per call) and counted by model.

What a call costs is what its server reported: its ``usage`` when the call ran to its end,
else (an SLM stream the router stopped) the prompt's tokens and the tokens received. A server
still generates the few tokens in flight until it sees the connection closed: the SLM's own
counter runs slightly ahead of what a run reports (tests/integration measure by how much).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import openai
from opentelemetry.trace import SpanKind, Status, StatusCode
from tenacity import RetryError

from a2r_graph.calls import rejected_error, retry_policy, unavailable_error
from a2r_graph.context import StageConfig
from a2r_graph.errors import MalformedReplyError
from a2r_graph.r2r.client import Chunk, TokenServer
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.routers import Router, TokenChoice
from a2r_graph.telemetry import Telemetry

Model = Literal["slm", "llm"]
MODELS: tuple[Model, Model] = ("slm", "llm")
T = TypeVar("T")
PROVIDER = "vllm"
Emit = Callable[[Model, str, list[int]], None]
"""Told each run of tokens a model wrote: the model, their text, their ids."""


@dataclass
class Tally:
    """One model's calls in a step, as their servers reported them."""

    calls: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0

    def add(self, input_tokens: int, cached: int | None, output_tokens: int) -> None:
        self.calls += 1
        self.input_tokens += input_tokens
        self.cached_input_tokens += min(cached or 0, input_tokens)
        self.output_tokens += output_tokens


@dataclass
class StepResult:
    slm_ids: list[int] = field(default_factory=list)
    llm_ids: list[int] = field(default_factory=list)
    flagged: TokenChoice | None = None
    """The SLM token the router flagged (the LLM wrote its position), if any."""
    finish_reason: str | None = None
    """Set when the run's output is finished: ``stop`` (a model ended it) or ``length``."""
    ends_with_stop_token: bool = False
    """The last token is the end-of-turn token a model sampled to stop (both engines return
    it with the output tokens, with no text): part of the output, not of the answer."""
    tallies: dict[Model, Tally] = field(default_factory=lambda: {m: Tally() for m in MODELS})


@dataclass
class _Call:
    """One model request being made: what its span and metrics record at its end."""

    input_tokens: int = 0
    cached: int | None = None
    output_tokens: int = 0
    answered: bool = False


async def with_retries(
    context: R2RContext, model: Model, stage: StageConfig, attempt: Callable[[], Awaitable[T]]
) -> T:
    """``attempt()`` under the run's retries and per-call timeout; a 4xx raises
    ``ModelRequestError`` at once, transient errors past ``max_attempts``
    ``EndpointUnavailableError`` (``EndpointTimeoutError`` when the last was a timeout)."""
    try:
        async for retry in retry_policy(context, model.upper(), stage):
            with retry:
                async with asyncio.timeout(context.request_timeout_s):
                    return await attempt()
    except RetryError as exhausted:
        cause = exhausted.last_attempt.exception()
        raise unavailable_error(cause, model.upper(), stage, context.max_attempts) from cause
    except openai.APIStatusError as rejected:
        raise rejected_error(rejected, model.upper(), stage) from rejected
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


class Step:
    """One step of the loop over an SLM and an LLM server."""

    def __init__(
        self,
        slm: TokenServer,
        llm: TokenServer,
        context: R2RContext,
        router: Router,
        telemetry: Telemetry,
        emit: Emit,
    ) -> None:
        self.servers = {"slm": slm, "llm": llm}
        self.context, self.router, self.telemetry, self.emit = context, router, telemetry, emit

    async def run(self, prefix: list[int], written: int) -> StepResult:
        """The SLM writes from ``prefix`` (``written`` output tokens so far) up to its first
        flagged token; the LLM writes that position."""
        result = StepResult()
        budget = self.context.r2r.max_tokens - written
        await with_retries(
            self.context,
            "slm",
            self.servers["slm"].stage,
            lambda: self._slm_attempt(prefix, written, budget, result),
        )
        if result.flagged is None:
            return result
        at = written + len(result.slm_ids)
        room = min(self.context.r2r.llm_tokens_per_switch, budget - len(result.slm_ids))
        reply = await with_retries(
            self.context,
            "llm",
            self.servers["llm"].stage,
            lambda: self._llm_attempt([*prefix, *result.slm_ids], room, result),
        )
        result.llm_ids = [token.choice.id for token in reply.tokens]
        if result.llm_ids:
            self.emit("llm", "".join(t.text for t in reply.tokens), result.llm_ids)
        if reply.finish_reason == "stop" or not result.llm_ids:
            result.finish_reason = "stop"
            result.ends_with_stop_token = _ends_with_stop_token(reply)
        elif at + len(result.llm_ids) >= self.context.r2r.max_tokens:
            result.finish_reason = "length"
        return result

    async def _slm_attempt(
        self, prefix: list[int], written: int, budget: int, result: StepResult
    ) -> None:
        """One SLM stream, from the prefix plus what earlier attempts of this step accepted
        (a stream cut short keeps its tokens: the retry continues after them)."""
        prompt = [*prefix, *result.slm_ids]
        if result.finish_reason is not None:
            return  # an earlier attempt saw the end and lost only what followed it
        if budget - len(result.slm_ids) <= 0:
            result.finish_reason = "length"
            return
        stream = self.servers["slm"].stream(
            prompt, budget - len(result.slm_ids), self.context.r2r.top_k
        )
        last = Chunk()
        async with self._observed("slm", prompt, result) as call, aclosing(stream) as chunks:
            async for chunk in chunks:
                call.answered = True
                call.cached = chunk.cached_tokens if call.cached is None else call.cached
                call.output_tokens += len(chunk.tokens)
                accepted = self._accept(chunk, written + len(result.slm_ids), result)
                if accepted:
                    result.slm_ids.extend(t.id for t, _ in accepted)
                    self.emit(
                        "slm", "".join(text for _, text in accepted), [t.id for t, _ in accepted]
                    )
                if result.flagged is not None:
                    return  # leaving the stream closes it: the server stops generating
                _settle(call, chunk)
                last = chunk if chunk.tokens else last  # vLLM: the stop token's own chunk
                if chunk.finish_reason is not None:
                    result.finish_reason = chunk.finish_reason
                    result.ends_with_stop_token = _ends_with_stop_token(last)
            if result.finish_reason is None:
                raise MalformedReplyError(
                    "the SLM stream ended without a finish_reason and no token was flagged: "
                    "cut short"
                )

    def _accept(
        self, chunk: Chunk, position: int, result: StepResult
    ) -> list[tuple[TokenChoice, str]]:
        """The chunk's tokens before the first one the router flags (that one is recorded)."""
        accepted = []
        for offset, token in enumerate(chunk.tokens):
            choice = replace(token.choice, position=position + offset)
            if self.router.flags(choice):
                result.flagged = choice
                break
            accepted.append((choice, token.text))
        return accepted

    async def _llm_attempt(self, prompt: list[int], room: int, result: StepResult) -> Chunk:
        async with self._observed("llm", prompt, result) as call:
            reply = await self.servers["llm"].complete(prompt, room)
            call.answered = True
            call.output_tokens = len(reply.tokens)
            call.cached = reply.cached_tokens
            _settle(call, reply)
        return reply

    def _observed(self, model: Model, prompt: list[int], result: StepResult) -> _Observed:
        return _Observed(self, model, prompt, result.tallies[model])


def _ends_with_stop_token(chunk: Chunk) -> bool:
    """Whether a completion that stopped (no stop strings are sent: its end-of-turn token)
    returned that token last (empty text), in ``chunk``, its final chunk with tokens."""
    return bool(chunk.tokens) and chunk.tokens[-1].text == ""


def _settle(call: _Call, chunk: Chunk) -> None:
    """The server's own figures, where the reply carries them, over what was counted."""
    if chunk.prompt_tokens is not None:
        call.input_tokens = chunk.prompt_tokens
    if chunk.completion_tokens is not None:
        call.output_tokens = chunk.completion_tokens
    if chunk.cached_tokens is not None:
        call.cached = chunk.cached_tokens


class _Observed:
    """A model call's span and metrics, and its usage in the step's tally, however it ends
    (a call the server answered counts, even when it failed later)."""

    def __init__(self, step: Step, model: Model, prompt: list[int], tally: Tally) -> None:
        self.context, self.telemetry, self.model, self.tally = (
            step.context,
            step.telemetry,
            model,
            tally,
        )
        self.call = _Call(input_tokens=len(prompt))
        self.attributes = {
            "gen_ai.operation.name": "text_completion",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": step.servers[model].stage.model,
            "a2r.stage": model,
        }
        self.span = self.telemetry.tracer.start_span(
            f"text_completion {self.attributes['gen_ai.request.model']}",
            kind=SpanKind.CLIENT,
            attributes={**self.attributes, "a2r.r2r.prompt_tokens": len(prompt)},
        )
        self.started = time.perf_counter()

    async def __aenter__(self) -> _Call:
        return self.call

    async def __aexit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        call, span = self.call, self.span
        cost = self.context.cost(
            self.model, call.input_tokens, call.cached or 0, call.output_tokens
        )
        if call.answered:
            self.tally.add(call.input_tokens, call.cached, call.output_tokens)
            span.set_attribute("gen_ai.usage.input_tokens", call.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", call.output_tokens)
            span.set_attribute("a2r.usage.cached_input_tokens", call.cached or 0)
            span.set_attribute("a2r.cost", cost)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
        tokens = (call.input_tokens, call.output_tokens) if call.answered else None
        seconds = time.perf_counter() - self.started
        self.telemetry.metrics.call(
            self.attributes, seconds, tokens, cost if tokens else 0.0, error
        )
