"""One model call: retried on transient errors, parsed into a ``Completion``."""

from __future__ import annotations

import asyncio
import logging

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

from a2r_graph.answers import last_boxed, split_reasoning
from a2r_graph.context import A2RContext, StageConfig
from a2r_graph.errors import EndpointUnavailableError, MissingUsageError, ModelRequestError
from a2r_graph.state import Completion, TokenUsage

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
logger = logging.getLogger(__name__)


def is_transient(error: BaseException) -> bool:
    """Connection failures, timeouts, 408/409/425/429 and 5xx: worth another attempt."""
    if isinstance(error, openai.APIStatusError):
        return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    return isinstance(
        error, openai.APIConnectionError | httpx.TransportError | TimeoutError | ConnectionError
    )


async def complete(
    model: BaseChatModel,
    prompt: str,
    stage_name: str,
    stage: StageConfig,
    context: A2RContext,
    *,
    seed: int | None = None,
    path_index: int | None = None,
) -> Completion:
    """Send ``prompt`` as one user message and parse the reply.

    Raises ``ModelRequestError`` at once on a 4xx, ``EndpointUnavailableError`` once
    transient errors outlast ``context.max_attempts``.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(context.max_attempts),
        wait=wait_exponential_jitter(
            multiplier=context.retry_initial_wait_s,
            jitter=context.retry_initial_wait_s,
            max=context.retry_max_wait_s,
        ),
        retry=retry_if_exception(is_transient),
        before_sleep=lambda state: _log_retry(state, stage_name, stage, path_index),
    )
    try:
        async for attempt in retrying:
            with attempt:
                async with asyncio.timeout(context.request_timeout_s):
                    message = await model.ainvoke(
                        [HumanMessage(prompt)],
                        {"metadata": call_metadata(stage_name, stage, path_index)},
                        temperature=stage.temperature,
                        top_p=stage.top_p,
                        max_tokens=stage.max_tokens,
                        seed=seed,
                        **({"extra_body": stage.extra_body} if stage.extra_body else {}),
                    )
    except RetryError as exhausted:
        cause = exhausted.last_attempt.exception()
        raise EndpointUnavailableError(
            stage_name, stage.url, stage.model, context.max_attempts, cause
        ) from cause
    except openai.APIStatusError as rejected:
        raise ModelRequestError(
            stage_name, stage.url, stage.model, rejected.status_code, _server_message(rejected)
        ) from rejected
    return parse_completion(message, stage, stage_name)


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
        stage.url,
        type(error).__name__,
        error,
        state.upcoming_sleep,
    )


def call_metadata(stage_name: str, stage: StageConfig, path_index: int | None) -> dict:
    """What the tracer (a2r_graph.tracing) records about a call beyond LangChain's own."""
    metadata = {
        "a2r.stage": stage_name,
        "a2r.model": stage.model,
        "a2r.base_url": stage.url,
        "a2r.input_price_per_mtok": stage.input_price_per_mtok,
        "a2r.output_price_per_mtok": stage.output_price_per_mtok,
    }
    if path_index is not None:
        metadata["a2r.path.index"] = path_index
    return metadata


def parse_completion(message: AIMessage, stage: StageConfig, stage_name: str) -> Completion:
    if message.usage_metadata is None:
        raise MissingUsageError(
            f"the {stage_name} server's reply carried no token usage; A2R accounts only "
            "server-reported tokens: use an OpenAI-compatible server that returns `usage`"
        )
    trace, answer = split_reasoning(
        message.text, message.additional_kwargs.get("reasoning_content")
    )
    tokens_in = message.usage_metadata["input_tokens"]
    tokens_out = message.usage_metadata["output_tokens"]
    return Completion(
        model=message.response_metadata.get("model_name") or stage.model,
        trace=trace,
        answer=answer,
        boxed=last_boxed(answer),
        finish_reason=message.response_metadata.get("finish_reason"),
        usage=TokenUsage(
            input_tokens=tokens_in, output_tokens=tokens_out, cost=stage.cost(tokens_in, tokens_out)
        ),
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
