"""One model call: retried on transient errors, parsed into a ``Completion``."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from a2r_graph.answers import last_boxed, split_reasoning
from a2r_graph.confidence import path_confidence, token_confidences
from a2r_graph.context import ConfidenceConfig, StageConfig
from a2r_graph.errors import (
    EndpointTimeoutError,
    EndpointUnavailableError,
    MalformedReplyError,
    MissingUsageError,
    ModelRequestError,
)
from a2r_graph.state import Completion, TokenUsage

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
RETRY_AFTER_STATUS = frozenset({429, 503})
logger = logging.getLogger(__name__)


def is_transient(error: BaseException) -> bool:
    """Worth another attempt: connection failures, timeouts, 408/409/425/429 and 5xx, and
    server faults in a 200 reply (``MalformedReplyError``; an ``error`` event mid-stream or a
    reply the SDK rejects, i.e. an ``openai.APIError`` that carries no 4xx/5xx status)."""
    if isinstance(error, openai.APIStatusError):
        return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    return isinstance(
        error,
        openai.APIError
        | MalformedReplyError
        | httpx.TransportError
        | TimeoutError
        | ConnectionError,
    )


def _is_timeout(error: BaseException | None) -> bool:
    return isinstance(error, openai.APITimeoutError | httpx.TimeoutException | TimeoutError)


def retry_after_s(error: BaseException | None) -> float | None:
    """The wait a 429 or 503 reply asks for in ``Retry-After`` (seconds or an HTTP date; or
    ``retry-after-ms``), or None when it asks for none readable."""
    if not isinstance(error, openai.APIStatusError) or error.status_code not in RETRY_AFTER_STATUS:
        return None
    headers = error.response.headers
    seconds: float | None = None
    try:
        if (milliseconds := headers.get("retry-after-ms")) is not None:
            seconds = float(milliseconds) / 1000
        elif (value := headers.get("retry-after")) is not None:
            try:
                seconds = float(value)
            except ValueError:
                when = parsedate_to_datetime(value)
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
                seconds = (when - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


class wait_retry_after(wait_base):  # noqa: N801 - named like tenacity's own waits
    """Tenacity wait: ``backoff``, or longer when the server's ``Retry-After`` asks for it;
    never more than ``cap`` (``retry_max_wait_s``), so a server cannot stall a run."""

    def __init__(self, backoff: wait_base, cap: float) -> None:
        self.backoff, self.cap = backoff, cap

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = self.backoff(retry_state)
        outcome = retry_state.outcome
        asked = retry_after_s(outcome.exception() if outcome and outcome.failed else None)
        return backoff if asked is None else min(max(asked, backoff), self.cap)


async def complete(
    model: BaseChatModel,
    prompt: str,
    stage_name: str,
    stage: StageConfig,
    context: CallSettings,
    *,
    seed: int | None = None,
    path_index: int | None = None,
    confidence: ConfidenceConfig | None = None,
    session: str | None = None,
    json_schema: dict[str, Any] | None = None,
) -> Completion:
    """Send ``prompt`` as one user message and parse the reply (with ``confidence``: ask
    for top-k logprobs and measure the reply's confidence from them; with ``session``: send
    it in ``context.session_header``, for a router's consistent hashing; with
    ``json_schema``: constrain the reply to it, ``response_format`` as vLLM's structured
    outputs and llama.cpp's grammars read it).

    Raises ``ModelRequestError`` at once on a 4xx, ``EndpointUnavailableError`` once
    transient errors (malformed replies included) outlast ``context.max_attempts``, and
    ``MissingUsageError`` at once on a whole reply without token usage.
    """
    retrying = retry_policy(context, stage_name, stage, path_index)
    # in extra_body, not as ChatOpenAI's own response_format, which takes the SDK's
    # parse() path and refuses a schema OpenAI's strict mode would not accept
    extra_body = stage.extra_body | (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": json_schema},
            }
        }
        if json_schema
        else {}
    )
    request: dict[str, Any] = {
        "temperature": stage.temperature,
        "top_p": stage.top_p,
        "max_tokens": stage.max_tokens,
        "seed": seed,
        **({"extra_body": extra_body} if extra_body else {}),
        **({"logprobs": True, "top_logprobs": confidence.top_logprobs} if confidence else {}),
        **(
            {"extra_headers": {context.session_header: session}}
            if session and context.session_header
            else {}
        ),
    }
    try:
        async for attempt in retrying:
            with attempt:
                async with asyncio.timeout(context.request_timeout_s):
                    message = await model.ainvoke(
                        [HumanMessage(prompt)],
                        {"metadata": call_metadata(stage_name, stage, path_index, confidence)},
                        **request,
                    )
                # a reply it cannot read is a failed attempt, retried like a 5xx
                completion = parse_completion(message, stage, stage_name)
                if confidence:
                    completion["confidence"] = path_confidence(
                        token_confidences(message.response_metadata.get("logprobs")),
                        confidence.group_size,
                        confidence.tail_tokens,
                    )
    except RetryError as exhausted:
        cause = exhausted.last_attempt.exception()
        raise unavailable_error(cause, stage_name, stage, context.max_attempts) from cause
    except openai.APIStatusError as rejected:
        raise rejected_error(rejected, stage_name, stage) from rejected
    return completion


class RetrySettings(Protocol):
    """What a run's context says about retries (``A2RContext``, ``r2r.R2RContext``)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def retry_initial_wait_s(self) -> float: ...
    @property
    def retry_max_wait_s(self) -> float: ...


class CallSettings(RetrySettings, Protocol):
    """What a run's context says about one call besides retries."""

    @property
    def request_timeout_s(self) -> float: ...
    @property
    def session_header(self) -> str | None: ...


def retry_policy(
    settings: RetrySettings, stage_name: str, stage: StageConfig, path_index: int | None = None
) -> AsyncRetrying:
    """The retries of one model call: transient errors (``is_transient``) with jittered
    exponential backoff, or the wait a 429/503 asks for, at most ``max_attempts`` tries."""
    return AsyncRetrying(
        stop=stop_after_attempt(settings.max_attempts),
        wait=wait_retry_after(
            wait_exponential_jitter(
                multiplier=settings.retry_initial_wait_s,
                jitter=settings.retry_initial_wait_s,
                max=settings.retry_max_wait_s,
            ),
            cap=settings.retry_max_wait_s,
        ),
        retry=retry_if_exception(is_transient),
        before_sleep=lambda state: _log_retry(state, stage_name, stage, path_index),
    )


def unavailable_error(
    cause: BaseException | None, stage_name: str, stage: StageConfig, attempts: int
) -> EndpointUnavailableError:
    """The error for a call whose every attempt failed with ``cause`` last (a timeout: 504)."""
    unavailable = EndpointTimeoutError if _is_timeout(cause) else EndpointUnavailableError
    return unavailable(stage_name, stage.display_url, stage.model, attempts, cause)


def rejected_error(
    rejected: openai.APIStatusError, stage_name: str, stage: StageConfig
) -> ModelRequestError:
    """The error for a call the server refused (a 4xx: never retried)."""
    return ModelRequestError(
        stage_name, stage.display_url, stage.model, rejected.status_code, _server_message(rejected)
    )


def _log_retry(
    state: RetryCallState, stage_name: str, stage: StageConfig, path_index: int | None
) -> None:
    error = state.outcome.exception() if state.outcome else None
    path = f" path {path_index}" if path_index is not None else ""
    logger.warning(
        "%s%s: attempt %d to %s failed (%s: %s); retrying in %.1f s",
        stage_name,
        path,
        state.attempt_number,
        stage.display_url,
        type(error).__name__,
        error,
        state.upcoming_sleep,
    )


def call_metadata(
    stage_name: str,
    stage: StageConfig,
    path_index: int | None,
    confidence: ConfidenceConfig | None = None,
) -> dict:
    """What the tracer (a2r_graph.tracing) records about a call beyond LangChain's own."""
    metadata = {
        "a2r.stage": stage_name,
        "a2r.model": stage.model,
        "a2r.base_url": stage.display_url,
        "a2r.input_price_per_mtok": stage.input_price_per_mtok,
        "a2r.output_price_per_mtok": stage.output_price_per_mtok,
    }
    if path_index is not None:
        metadata["a2r.path.index"] = path_index
    if confidence is not None:
        metadata["a2r.confidence.group_size"] = confidence.group_size
        metadata["a2r.confidence.tail_tokens"] = confidence.tail_tokens
    return metadata


def _token_count(tokens: object, name: str, stage_name: str) -> int:
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise MalformedReplyError(
            f"the {stage_name} server's reply has usage {name}={repr(tokens)[:80]}, "
            "not a token count"
        )
    return tokens


def parse_completion(message: AIMessage, stage: StageConfig, stage_name: str) -> Completion:
    if message.usage_metadata is None:
        raise MissingUsageError(
            f"the {stage_name} server's reply carried no token usage; A2R accounts only "
            "server-reported tokens: use an OpenAI-compatible server that returns `usage`"
        )
    tokens_in, tokens_out = (
        _token_count(message.usage_metadata.get(name), name, stage_name)
        for name in ("input_tokens", "output_tokens")
    )
    reasoning = message.additional_kwargs.get("reasoning_content")
    trace, answer = split_reasoning(message.text, reasoning if isinstance(reasoning, str) else None)
    served = message.response_metadata.get("model_name")
    finish_reason = message.response_metadata.get("finish_reason")
    # a model of several calls at several prices (r2r.ChatR2R) reports what it cost
    cost = message.response_metadata.get("a2r_cost")
    if not isinstance(cost, int | float) or isinstance(cost, bool) or not 0 <= cost < math.inf:
        cost = stage.cost(tokens_in, tokens_out)
    return Completion(
        model=served if isinstance(served, str) and served else stage.model,
        trace=trace,
        answer=answer,
        boxed=last_boxed(answer),
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage=TokenUsage(input_tokens=tokens_in, output_tokens=tokens_out, cost=cost),
    )


def _server_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
        if isinstance(body, dict) and body.get("detail"):
            return str(body["detail"])
    return error.message
