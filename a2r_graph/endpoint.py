"""What a vLLM endpoint says about its model besides completions: window and token counts.

vLLM's ``/v1/models`` reports ``max_model_len``, and its ``/tokenize`` counts a chat prompt
exactly as ``/v1/chat/completions`` will (chat template included). Servers without them
(other OpenAI-compatible APIs) give ``None``, and callers fall back on what they know.
"""

from __future__ import annotations

import httpx

from a2r_graph.chat_models import api_key_for
from a2r_graph.context import StageConfig

_windows: dict[tuple[str, str], int | None] = {}
"""Per (endpoint, model): the window its /v1/models reported, or None when it answered without
one (not vLLM), so a run asks once per process, not on every synthesis."""


def _client_for(stage: StageConfig, timeout_s: float) -> httpx.AsyncClient:
    # A client per call: these calls are rare (the window is cached, prompts are counted
    # only when they may not fit), and a pooled client must not outlive its event loop.
    return httpx.AsyncClient(
        base_url=stage.url.removesuffix("/v1"),
        headers={"Authorization": f"Bearer {api_key_for(stage)}"},
        timeout=timeout_s,
    )


async def context_window(stage: StageConfig, timeout_s: float) -> int | None:
    """The served model's ``max_model_len``, or None; cached once the server answered."""
    key = (stage.url, stage.model)
    if key not in _windows:
        try:
            async with _client_for(stage, timeout_s) as client:
                response = await client.get("/v1/models")
            response.raise_for_status()
            models = response.json().get("data", [])
        except (httpx.HTTPError, ValueError, AttributeError):
            return None  # unreachable now: ask again next run
        # Anything unexpected in the listing (entries that are not objects, a window that is
        # not a positive integer) reads as "no window": callers fall back, nothing raises.
        _windows[key] = next(
            (
                model["max_model_len"]
                for model in (models if isinstance(models, list) else [])
                if isinstance(model, dict)
                and model.get("id") == stage.model
                and _is_count(model.get("max_model_len"), minimum=1)
            ),
            None,
        )
    return _windows[key]


def _is_count(value: object, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


async def count_prompt_tokens(stage: StageConfig, prompt: str, timeout_s: float) -> int | None:
    """Tokens of ``prompt`` sent as one user message, by the server's tokenizer, or None."""
    request = {
        "model": stage.model,
        "messages": [{"role": "user", "content": prompt}],
        "add_generation_prompt": True,
    }
    try:
        async with _client_for(stage, timeout_s) as client:
            response = await client.post("/tokenize", json=request)
        response.raise_for_status()
        count = response.json().get("count")
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return count if _is_count(count) else None
