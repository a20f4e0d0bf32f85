"""The token client's reading of replies it must not trust, and R2R's place in the layers."""

from __future__ import annotations

from contextlib import aclosing

import httpx
import openai
import pytest

from a2r_graph.context import StageConfig
from a2r_graph.errors import MalformedReplyError
from a2r_graph.r2r.client import TokenServer, read_chunk
from tests.package_imports import DOORS, import_graph

STAGE = StageConfig(base_url="http://model.test/v1", model="m")


def server(handler) -> TokenServer:
    return TokenServer(STAGE, 5, transport=httpx.MockTransport(handler), engine="vllm")


async def drain(token_server: TokenServer) -> list:
    async with token_server, aclosing(token_server.stream([1, 2], 4, 2)) as chunks:
        return [chunk async for chunk in chunks]


async def test_a_stream_cut_before_done_is_a_server_fault():
    """Catches: a stream the server dropped without [DONE] read as a finished completion
    (the loop would end the answer there)."""
    body = b'data: {"choices": [{"text": "a", "finish_reason": null}]}\n\n'
    with pytest.raises(MalformedReplyError, match="without \\[DONE\\]"):
        await drain(server(lambda request: httpx.Response(200, content=body)))


async def test_an_error_event_mid_stream_is_a_server_fault():
    """Catches: vLLM's mid-stream ``{"error": ...}`` event taken for an empty chunk."""
    body = b'data: {"error": {"message": "engine dead", "code": 500}}\n\n'
    with pytest.raises(MalformedReplyError, match="engine dead"):
        await drain(server(lambda request: httpx.Response(200, content=body)))


async def test_an_http_error_keeps_its_status_and_the_servers_words():
    """Catches: a 429 or 503 that the retry policy cannot tell from a 400 (it reads the
    status), or an error that hides what the server said."""
    reply = httpx.Response(
        429, json={"error": {"message": "slow down"}}, headers={"retry-after": "2"}
    )
    with pytest.raises(openai.APIStatusError, match="slow down") as raised:
        await drain(server(lambda request: reply))
    assert raised.value.status_code == 429


def test_token_ids_that_are_not_ids_are_refused():
    """Catches: a vLLM started without ``return_tokens_as_token_ids`` support (tokens as
    text) routed as if its tokens were ids."""
    reply = {"choices": [{"text": "a", "logprobs": {"tokens": ["a"], "top_logprobs": [{}]}}]}
    with pytest.raises(MalformedReplyError, match="return_tokens_as_token_ids"):
        read_chunk(reply)


def test_cached_tokens_are_read_from_either_engine():
    """Catches: cached input missed on llama.cpp (its ``timings.cache_n``) or vLLM
    (``usage.prompt_tokens_details.cached_tokens``)."""
    llamacpp = read_chunk({"choices": [], "timings": {"cache_n": 17, "prompt_n": 2}})
    usage = {"prompt_tokens": 40, "completion_tokens": 3}
    vllm = read_chunk(
        {"choices": [], "usage": usage | {"prompt_tokens_details": {"cached_tokens": 32}}}
    )
    assert (llamacpp.cached_tokens, vllm.cached_tokens) == (17, 32)
    assert (vllm.prompt_tokens, vllm.completion_tokens) == (40, 3)


def test_r2r_imports_no_door():
    """Catches: the R2R strategy reaching into a2r_graph.serving (a core that only works
    behind one door)."""
    edges = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module.startswith("a2r_graph.r2r")
        for target in targets
        if target == DOORS or target.startswith(f"{DOORS}.")
    ]
    assert edges == [] and "a2r_graph.r2r.graph" in import_graph()
