"""Graph state: what flows between the nodes, and what a run returns."""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, NotRequired

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from a2r_graph.confidence import PathConfidence
from a2r_graph.errors import InvalidQuestionError
from a2r_graph.prompts import render_explorer_prompt

if TYPE_CHECKING:
    from a2r_graph.context import A2RContext


class TokenUsage(TypedDict):
    """Tokens of one model call, as the server's ``usage`` reported them, and their cost."""

    input_tokens: int
    output_tokens: int
    cost: float
    """input_tokens * input price + output_tokens * output price (StageConfig, per 1M)."""


class Completion(TypedDict):
    """One model call, parsed."""

    model: str
    trace: str
    """Reasoning trace T (vLLM's reasoning field or the inline <think> block); may be empty."""
    answer: str
    """Answer component A: the text after the reasoning, ending in the final answer."""
    boxed: str | None
    """Content of the last \\boxed{} in the answer component, if any."""
    finish_reason: str | None
    usage: TokenUsage
    confidence: NotRequired[PathConfidence | None]
    """DeepConf's measures from the reply's logprobs (``A2RContext.confidence``); None when
    confidence is off or the reply carried no logprobs."""


class ExplorerPath(Completion):
    """One explorer sample P_i = (T_i, A_i)."""

    index: int
    error: str | None
    """Why this path is unusable (retries exhausted, no answer component); None if usable."""
    answered: bool
    """The server answered (usable or not). False: the call failed, and resuming the run
    samples this path again (an answered but unusable path too, when the run has fewer
    usable paths than ``min_paths``: see ``reusable_paths``)."""


class StageUsage(TypedDict):
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float


class ExplorerTask(TypedDict):
    """What the map step sends to each explorer branch."""

    question: str
    index: int
    session: NotRequired[str]
    """The run's session id (``A2RContext.session_header``)."""


def merge_paths(left: list[ExplorerPath], right: list[ExplorerPath]) -> list[ExplorerPath]:
    """Reducer for explorer branches: gather every path, ordered by its index."""
    return sorted([*left, *right], key=lambda path: path["index"])


class ReferenceFit(TypedDict):
    """How the references were fitted into the synthesizer's context window."""

    context_window: int | None
    """The synthesizer's window in tokens (configured, or the server's max_model_len);
    None: unknown, nothing was checked."""
    prompt_tokens: int | None
    """The prompt's size as the server's tokenizer counted it; None when it was not
    counted (it fitted even at one token per byte)."""
    policy: str
    """``A2RContext.overflow``: truncate, drop or error."""
    truncated: list[int]
    """Paths whose answer component was cut from the front to fit (final answer kept)."""
    dropped: list[int]
    """Paths whose answer component was left out to fit."""


class Aggregation(TypedDict):
    """Which aggregator gave the run's answer, and why (``A2RContext.synthesis_mode``)."""

    by: str
    """shortcut, vote or weighted_vote (no synthesizer call); synthesizer or selector."""
    why: str
    vote: NotRequired[Mapping[str, Any] | None]
    """The paths' vote (``policies.Vote``: boxed, paths, share, tied, tally), in the vote
    modes; None when no path had a final answer."""


ANSWERED_BY_PATHS = ("shortcut", "vote", "weighted_vote")
"""The aggregators that answer without a synthesizer call."""


class Decisions(TypedDict, total=False):
    """What the run's policies decided (``A2RContext``: waves, shortcut, top_references,
    budget); empty when none is set."""

    waves: list[list[int]]
    """The path indices each wave explored, in order (with ``waves`` set)."""
    agreed: Mapping[str, Any] | None
    """The explored paths' agreement (``policies.Agreed``: boxed, paths, share), or None."""
    shortcut: bool
    """The synthesizer was skipped: the answer is the agreeing paths'."""
    budget_reached: dict[str, Any]
    """The budget stopped exploring: what was ``spent`` and the path indices ``skipped``."""
    references: list[int]
    """The paths whose answer components the synthesizer got (with ``top_references``)."""
    selected: int | None
    """The path the selector chose (``synthesis_mode="select"``); None: it named no
    reference, and the most common answer was taken."""
    aggregation: Aggregation


class A2RInput(TypedDict):
    question: str


class A2RInputModel(BaseModel):
    """What makes an ``A2RInput`` valid; checked by the map step and by LangGraph Server."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    question: str = Field(min_length=1, description="The problem to solve.")


def validated_question(question: object) -> str:
    """``question`` stripped, or ``InvalidQuestionError`` saying what to pass."""
    try:
        return A2RInputModel(question=question).question
    except ValidationError as error:
        raise InvalidQuestionError(
            f"question must be a non-empty string, got {question!r}: pass {{'question': '...'}}"
        ) from error


class A2ROutput(TypedDict):
    question: str
    answer: str
    """The synthesizer's answer component (its reasoning trace is in ``synthesis``)."""
    boxed_answer: str | None
    """The final answer: the last \\boxed{} of the synthesizer's answer."""
    paths: list[ExplorerPath]
    synthesis: Completion | None
    """The synthesizer's call; None when the shortcut answered without it."""
    reference_fit: ReferenceFit
    decisions: Decisions
    usage: dict[str, StageUsage]
    """Keys "explore", "synthesize" and "total": calls, server-reported tokens and cost
    ("synthesize" counts 0 calls when the shortcut skipped it).
    Per-path figures are in ``paths[i]["usage"]``, the synthesizer's in ``synthesis``."""


class A2RState(A2RInput, A2ROutput):  # type: ignore[misc]  # adds reducers to paths, usage
    paths: Annotated[list[ExplorerPath], merge_paths]  # type: ignore[misc]
    usage: Annotated[dict[str, StageUsage], operator.or_]  # type: ignore[misc]
    synthesizer_prompt: str
    """The exact prompt sent to the synthesizer: instruction, question, references."""
    reference_paths: list[int]
    """The path index of each reference in ``synthesizer_prompt``, in order."""
    session: str
    """The run's session id: its thread id, else a per-run id (``A2RContext.session_header``)."""
    explored_question: str
    """The question the ``paths`` answer: rerunning it on a thread whose run did not finish
    keeps the answered paths (see ``nodes.dispatch``)."""
    explored_with: dict[str, Any]
    """What else the ``paths`` were sampled with (``explorer_settings``): rerunning the
    question with other settings samples every path again."""


def explorer_settings(context: A2RContext, question: str) -> dict[str, Any]:
    """What an explorer path of ``question`` is a sample of: the model, the exact prompt (as
    a digest) and the sampling. Not the endpoint's URL (a moved server is a fix, not another
    model) nor ``max_tokens`` (raising it is the fix for paths it cut off, and those are
    sampled again anyway)."""
    stage = context.explorer
    prompt = render_explorer_prompt(question, context.prompts_dir, context.prompts.explorer)
    return {
        "model": stage.model,
        "prompt": hashlib.sha256(prompt.encode()).hexdigest(),
        "temperature": stage.temperature,
        "top_p": stage.top_p,
        "seed": stage.seed,
        "extra_body": stage.extra_body,
    }


def changed_settings(state: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """The names of the ``explorer_settings`` that differ from those the saved paths were
    sampled with (none for a run saved before they were recorded)."""
    saved = state.get("explored_with")
    if saved is None:
        return []
    return sorted(name for name in {*saved, *settings} if saved.get(name) != settings.get(name))


def reusable_paths(
    state: A2RState, question: str, n: int, min_paths: int = 1
) -> list[ExplorerPath]:
    """The paths of this thread's unfinished run of ``question`` (within ``n``) that rerunning
    it keeps: every usable path; and the answered but unusable ones (e.g. cut off by
    ``max_tokens``: they are samples too) only while the usable ones reach ``min_paths``.
    Otherwise keeping them would stop the run again for good, whatever was fixed (a larger
    ``max_tokens``), so they are sampled again. Paths the server never answered never stay."""
    if state.get("explored_question") != question or is_finished(state):
        return []
    paths = [path for path in state.get("paths", []) if path["index"] < n]
    usable = [path for path in paths if path["error"] is None]
    if len(usable) < min_paths:
        return usable
    return [path for path in paths if path["answered"]]


def is_finished(state: A2RState) -> bool:
    """The run answered: the synthesizer did, or the paths did without it (the shortcut, a
    vote)."""
    decisions = state.get("decisions", {})
    return (
        state.get("synthesis") is not None
        or bool(decisions.get("shortcut"))
        or decisions.get("aggregation", {}).get("by") in ANSWERED_BY_PATHS
    )


def sum_usage(usages: Iterable[Mapping[str, Any]]) -> TokenUsage:
    """The token and cost sums of some calls' (or stages') usage: the one place they add up."""
    usages = list(usages)
    return TokenUsage(
        input_tokens=sum(u["input_tokens"] for u in usages),
        output_tokens=sum(u["output_tokens"] for u in usages),
        cost=sum(u["cost"] for u in usages),
    )


def stage_usage(completions: list[Completion] | list[ExplorerPath]) -> StageUsage:
    """Sum the server-reported usage, and cost, of one stage's calls."""
    return StageUsage(calls=len(completions), **sum_usage(c["usage"] for c in completions))


def total_usage(*stages: StageUsage) -> StageUsage:
    """Cost = Cost_E + Cost_S (and the same sums for calls and tokens)."""
    return StageUsage(calls=sum(s["calls"] for s in stages), **sum_usage(stages))
