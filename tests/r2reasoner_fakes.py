"""Fake model tiers for R2-Reasoner's unit tests: servers that answer by the kind of prompt
(plan, subtask, summary, the whole question), recording each prompt and request."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from a2r_graph.r2reasoner.context import ReasonerContext
from tests.fakes import reply, token_logprobs

QUESTION = "Pens cost 3 and notebooks 5. What do 4 pens and 3 notebooks cost?"
SURE = token_logprobs([-0.01, -9.0, -9.0])  # confidence 6.0
UNSURE = token_logprobs([-1.0, -1.1, -1.2])  # confidence 1.1


class Tier(GenericFakeChatModel):
    """A fake server answering by prompt: ``respond(prompt)`` gives the reply (or raises);
    every prompt and its request is recorded."""

    respond: Callable[[str], Any]
    calls: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)
    messages: Any = iter(())

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        prompt = messages[-1].text
        self.calls.append((prompt, kw))
        answer = self.respond(prompt)
        if asyncio.iscoroutine(answer):
            answer = await answer
        if isinstance(answer, BaseException):
            raise answer
        return ChatResult(generations=[ChatGeneration(message=answer)])

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        whole = (await self._agenerate(messages, stop, run_manager, **kw)).generations[0].message
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=whole.content,
                usage_metadata=whole.usage_metadata,
                response_metadata=whole.response_metadata,
            )
        )

    def prompts(self, kind: str) -> list[str]:
        return [p for p, _ in self.calls if kind_of(p) == kind]


def kind_of(prompt: str) -> str:
    if prompt.startswith("Break the problem"):
        return "plan"
    if prompt.startswith("You are solving one step"):
        return "subtask"
    if "Steps solved so far" in prompt:
        return "summary"
    return "direct"


def step_of(prompt: str) -> int:
    return int(re.search(r"Step: step (\d+)", prompt).group(1))


def plan(*steps: tuple[int, list[int]], hard: tuple[int, ...] = ()) -> AIMessage:
    subtasks = [
        {
            "id": i,
            "task": f"step {i}",
            "depends_on": deps,
            "difficulty": "hard" if i in hard else "easy",
        }
        for i, deps in steps
    ]
    return reply(json.dumps({"subtasks": subtasks}), output_tokens=40)


def answers(values: dict[int, str], logprobs: dict | None = SURE) -> Callable[[str], AIMessage]:
    return lambda p: reply(f"so \\boxed{{{values[step_of(p)]}}}", logprobs=logprobs)


def serve(plan_reply: Any, small: Callable[[str], Any], large: Callable[[str], Any] | None = None):
    """The two tiers: the large one plans and summarizes, ``small``/``large`` answer steps."""
    large = large or small

    def large_respond(prompt: str) -> Any:
        kind = kind_of(prompt)
        if kind == "plan":
            return plan_reply(prompt) if callable(plan_reply) else plan_reply
        if kind in ("summary", "direct"):
            return reply("The total is \\boxed{27}", input_tokens=50, output_tokens=8)
        return large(prompt)

    tiers = {"small-model": Tier(respond=small), "large-model": Tier(respond=large_respond)}
    return tiers, lambda stage, timeout_s: tiers[stage.model]


def context(**settings: Any) -> ReasonerContext:
    return ReasonerContext(
        tiers=[
            {"name": "small", "model": "small-model", "output_price_per_mtok": 1.0},
            {"name": "large", "model": "large-model", "output_price_per_mtok": 10.0},
        ],
        r2reasoner=settings,
        max_attempts=1,
        retry_initial_wait_s=0,
        retry_max_wait_s=0,
    )
