"""The R2R graph's state: the token ids so far (checkpointed after every step, so that a run
killed mid-way resumes from its saved prefix) and what a run returns."""

from __future__ import annotations

from typing import Any, NotRequired

from typing_extensions import TypedDict

from a2r_graph.state import StageUsage, sum_usage


class ModelCounts(TypedDict):
    slm: int
    llm: int


class R2RInput(TypedDict):
    question: str
    prompt: NotRequired[str]
    """The user message to send as is (default: the package's explorer prompt over
    ``question``): what ``ChatR2R`` passes, a caller's own prompt."""


class R2ROutput(TypedDict):
    question: str
    answer: str
    """The decoded output, both models' tokens."""
    boxed_answer: str | None
    """The last \\boxed{} of the answer."""
    finish_reason: str
    """stop: a model ended the output; length: it reached ``r2r.max_tokens``."""
    switches: int
    """Positions the router flagged, which the LLM wrote."""
    tokens: ModelCounts
    """Output tokens each model wrote into the answer."""
    usage: dict[str, StageUsage]
    """Keys "slm", "llm" and "total": calls, server-reported tokens, cost (cached input at its
    own price). Output tokens count what each server generated, the SLM's flagged tokens
    included (more than ``tokens``)."""
    cached_input_tokens: dict[str, int]
    """Keys "slm", "llm", "total": input tokens the servers reported as cached (part of
    ``usage``'s input_tokens)."""
    router: dict[str, Any]
    """The router's name and threshold, and the models (``slm``, ``llm``) the run used."""


class R2RState(R2RInput, R2ROutput):  # type: ignore[misc]
    prompt_ids: list[int]
    """The question's chat prompt as token ids (the SLM's template)."""
    output_ids: list[int]
    """The output so far, both models' tokens."""
    started_question: str
    """The question ``prompt_ids`` renders (a thread's saved run goes on only for it)."""
    engines: dict[str, str]
    """Each model's engine (``llamacpp``, ``vllm``), found once when the run started."""
    ends_with_stop_token: bool
    """The last of ``output_ids`` is the end-of-turn token that stopped the output."""
    done: bool


def empty_usage() -> dict[str, StageUsage]:
    return {
        key: StageUsage(calls=0, input_tokens=0, output_tokens=0, cost=0.0)
        for key in ("slm", "llm", "total")
    }


def add_usage(usage: dict[str, StageUsage], model: str, added: StageUsage) -> dict[str, StageUsage]:
    """``usage`` with ``added`` counted for ``model`` and in the total."""
    updated = dict(usage)
    for key in (model, "total"):
        old = usage[key]
        updated[key] = StageUsage(calls=old["calls"] + added["calls"], **sum_usage([old, added]))
    return updated
