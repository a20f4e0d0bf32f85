"""What a vLLM endpoint says about its model besides completions: window and token counts.

vLLM's ``/v1/models`` reports ``max_model_len``, and its ``/tokenize`` counts a chat prompt
exactly as ``/v1/chat/completions`` will (chat template included); so do llama.cpp's
``/apply-template`` and ``/tokenize`` together. Servers without them (other OpenAI-compatible
APIs) give ``None``, and callers fall back on what they know.
"""

from __future__ import annotations

import time

import httpx

from a2r_graph.chat_models import api_key_for
from a2r_graph.context import StageConfig
from a2r_graph.errors import ModelRequestError

WINDOW_TTL_S = 60.0
"""How long a reported window is trusted: a server restarted with another --max-model-len is
asked again within this, or at once when it rejects a prompt as too long."""
MAX_WINDOWS = 64
"""The most (endpoint, model) windows kept; the oldest go first."""

_windows: dict[tuple[str, str], tuple[float, int | None]] = {}
"""Per (endpoint, model): when it was asked (``time.monotonic``) and the window its
/v1/models reported, or None when it answered without one (not vLLM), so runs ask at most
once per ``WINDOW_TTL_S``, not on every synthesis."""


def _client_for(stage: StageConfig, timeout_s: float) -> httpx.AsyncClient:
    # A client per call: these calls are rare (the window is cached, prompts are counted
    # only when they may not fit), and a pooled client must not outlive its event loop.
    return httpx.AsyncClient(
        base_url=stage.url.removesuffix("/v1"),
        headers={"Authorization": f"Bearer {api_key_for(stage)}"},
        timeout=timeout_s,
    )


async def context_window(stage: StageConfig, timeout_s: float) -> int | None:
    """The served model's ``max_model_len``, or None; cached for ``WINDOW_TTL_S`` once the
    server answered."""
    key = (stage.url, stage.model)
    if (cached := _windows.get(key)) is not None and time.monotonic() - cached[0] < WINDOW_TTL_S:
        return cached[1]
    try:
        async with _client_for(stage, timeout_s) as client:
            response = await client.get("/v1/models")
        response.raise_for_status()
        models = response.json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return None  # unreachable now: ask again next run
    # Anything unexpected in the listing (entries that are not objects, a window that is
    # not a positive integer) reads as "no window": callers fall back, nothing raises.
    window = next(
        (
            model["max_model_len"]
            for model in (models if isinstance(models, list) else [])
            if isinstance(model, dict)
            and model.get("id") == stage.model
            and _is_count(model.get("max_model_len"), minimum=1)
        ),
        None,
    )
    _windows.pop(key, None)  # re-inserted last: the dict's order is the age order
    _windows[key] = (time.monotonic(), window)
    while len(_windows) > MAX_WINDOWS:
        del _windows[next(iter(_windows))]
    return window


def is_context_overflow(error: BaseException) -> bool:
    """The server rejected a prompt as longer than its window (vLLM's 400 says "maximum
    context length"): the window it was fitted to is out of date."""
    return (
        isinstance(error, ModelRequestError)
        and error.status == 400
        and "maximum context length" in error.server_message
    )


def forget_context_window(stage: StageConfig) -> None:
    """Ask ``stage``'s server for its window again on the next ``context_window``."""
    _windows.pop((stage.url, stage.model), None)


def _is_count(value: object, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


async def count_prompt_tokens(stage: StageConfig, prompt: str, timeout_s: float) -> int | None:
    """Tokens of ``prompt`` sent as one user message, by the server's tokenizer, or None.

    vLLM's ``/tokenize`` takes the chat messages and answers their ``count``. llama.cpp's
    takes text ``content`` and answers ``tokens`` only: the messages are templated first by
    its ``/apply-template``, then tokenized as its chat completions do (special tokens
    added and parsed)."""
    messages = [{"role": "user", "content": prompt}]
    request = {"model": stage.model, "messages": messages, "add_generation_prompt": True}
    try:
        async with _client_for(stage, timeout_s) as client:
            response = await client.post("/tokenize", json=request)
            response.raise_for_status()
            reply = response.json()
            count = reply.get("count")
            if count is None and isinstance(reply.get("tokens"), list):  # llama.cpp
                templated = await client.post("/apply-template", json={"messages": messages})
                templated.raise_for_status()
                content = {"content": templated.json()["prompt"]}
                response = await client.post(
                    "/tokenize", json={**content, "add_special": True, "parse_special": True}
                )
                response.raise_for_status()
                tokens = response.json().get("tokens")
                count = len(tokens) if isinstance(tokens, list) else None
    except (httpx.HTTPError, ValueError, AttributeError, KeyError, TypeError):
        return None
    return count if _is_count(count) else None
