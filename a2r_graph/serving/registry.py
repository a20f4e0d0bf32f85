"""The strategies every door serves, by name.

A strategy is a graph that takes ``{"question": ...}`` and returns at least ``question``,
``answer``, ``boxed_answer`` and ``usage`` (calls, tokens and cost per stage, and ``total``),
with what an untrusted caller may choose of it (``options``: resolved against the deployment's
configuration by their ``to_context()``) and what a tool call may pass (``arguments``:
``question`` and options of the same names). The doors find graphs here, never by import:
LangGraph Server's graph ids (``langgraph.json`` lists each one), the OpenAI endpoint's
``model``, the MCP tools, ``a2r ask --graph``, ``as_tool`` and ``a2r eval``.

The package's own strategies are ``BUILT_IN``; a deployment adds its own by naming them in
``A2R_STRATEGIES`` (``module:attribute`` of a ``Strategy``, comma- or space-separated).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from langgraph.types import Checkpointer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from a2r_graph.context import SynthesisMode
from a2r_graph.errors import ConfigurationError, describe_validation_error
from a2r_graph.graph import build_graph
from a2r_graph.r2r.graph import build_r2r_graph
from a2r_graph.r2r.state import R2ROutput
from a2r_graph.r2reasoner.graph import build_reasoner_graph
from a2r_graph.r2reasoner.state import ReasonerOutput
from a2r_graph.serving.run_options import (
    R2ROptions,
    ReasonerOptions,
    RunOptions,
    describe_run_error,
    parse_options,
)
from a2r_graph.stages import GRAPH, SYNTHESIZE
from a2r_graph.state import A2ROutput


def _never(context: Any) -> bool:
    return False


def _describe(error: ValidationError, prefix: str = "context.") -> str:
    return describe_validation_error(error, field_prefix=prefix, env_prefix=None)


@dataclass(frozen=True)
class Strategy:
    name: str
    """Its graph id, OpenAI model name and MCP tool name."""
    description: str
    """For a model choosing a tool: what it does, when it pays, what to pass."""
    build: Callable[..., Any]
    """``build(checkpointer=..., context_schema=...)``: the compiled graph."""
    options: type[BaseModel]
    """What a server's caller may set; ``to_context()`` applies them to the deployment's."""
    arguments: type[BaseModel]
    """What a tool call passes: ``question``, and options of the same names."""
    output: type
    """The ``TypedDict`` of what a run returns (beside ``question``, ``answer``,
    ``boxed_answer`` and ``usage``, the strategy's own keys)."""
    answer_node: str
    """The node whose streamed tokens are the answer."""
    streams: str = "messages"
    """How the answer streams: ``messages`` (its chat model's chunks), or ``custom`` (the
    node's own ``{"text": ...}`` events)."""
    reasoning_only: Callable[[Any], bool] = _never
    """Whether a run of this context streams only deliberation (the answer comes whole)."""
    describe_error: Callable[..., str] = _describe
    """``describe_error(error, prefix="context.")``: bad ``options`` in words, each field (named
    after ``prefix``), what is wrong, what to do."""

    def graph(self, checkpointer: Checkpointer = None) -> Any:
        """The graph for trusted callers: its context is the whole configuration."""
        return self.build(checkpointer=checkpointer)

    def served_graph(self) -> Any:
        """The graph for untrusted runs: its context is ``options``."""
        return self.build(context_schema=self.options)

    def resolve(self, options: Any) -> Any:
        """The context a run of these (untrusted) options gets; ``ConfigurationError`` naming
        each field that is wrong."""
        try:
            parsed = options if isinstance(options, self.options) else None
            parsed = parsed or parse_options(options or {}, self.options)
        except ValidationError as error:
            raise ConfigurationError(self.describe_error(error)) from None
        return parsed.to_context()  # type: ignore[attr-defined]

    def output_of(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A run's result from its graph's whole state (what a server streams)."""
        return {key: values[key] for key in self.output.__annotations__ if key in values}

    def options_of(self, arguments: BaseModel) -> dict[str, Any]:
        """The run options a tool call's ``arguments`` set (those it passed)."""
        passed = arguments.model_dump(exclude_none=True, exclude={"question"})
        return {key: value for key, value in passed.items() if key in self.options.model_fields}


class QuestionArguments(BaseModel):
    """What a tool call of a strategy that takes no options passes."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    question: str = Field(
        min_length=1,
        description="The complete, self-contained problem statement, with every number and "
        "condition it needs.",
    )


class A2RArguments(QuestionArguments):
    """What a call of the A2R tool may pass."""

    n: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Parallel solution attempts (default: the configured n). More is more "
        "reliable and costs proportionally more.",
    )
    synthesis_mode: SynthesisMode | None = Field(
        None,
        description="How the attempts become one answer (default: the configured mode). "
        "synthesize: a stronger model re-reasons over them; vote: their most common answer, "
        "no extra model call (cheapest); vote_first: the vote when one answer clearly leads, "
        "else synthesize; weighted_vote: a vote weighted by each attempt's confidence; "
        "select: the stronger model picks the best attempt.",
    )


A2R = Strategy(
    name=GRAPH,
    description=(
        "Solve a hard reasoning or math problem carefully: several independent solvers attempt "
        "it in parallel and a stronger model synthesizes their answers into one final answer. "
        "Slow and costly: use it for problems that need careful multi-step reasoning. Pass the "
        "full, self-contained problem statement."
    ),
    build=build_graph,
    options=RunOptions,
    arguments=A2RArguments,
    output=A2ROutput,
    answer_node=SYNTHESIZE.node,
    reasoning_only=lambda context: context.synthesis_mode == "select",
    describe_error=describe_run_error,
)
R2R = Strategy(
    name="r2r",
    description=(
        "Solve a reasoning or math problem with routed decoding: a small model writes the "
        "answer and a larger model writes only the tokens where the small one is unsure. "
        "Costs less than the larger model alone. Pass the full, self-contained problem "
        "statement."
    ),
    build=build_r2r_graph,
    options=R2ROptions,
    arguments=QuestionArguments,
    output=R2ROutput,
    answer_node="step",
    streams="custom",
)
R2REASONER = Strategy(
    name="r2reasoner",
    description=(
        "Solve a multi-step reasoning or math problem by subtasks: the problem is split into "
        "short steps, each answered by the smallest model that is sure of it (a larger one "
        "when it is not), and the results are combined into one final answer. Pass the full, "
        "self-contained problem statement."
    ),
    build=build_reasoner_graph,
    options=ReasonerOptions,
    arguments=QuestionArguments,
    output=ReasonerOutput,
    answer_node="summarize",
)
BUILT_IN = (A2R, R2R, R2REASONER)
DEFAULT = A2R.name


def strategies() -> dict[str, Strategy]:
    """Every strategy by name: the built-in ones, then ``A2R_STRATEGIES``'."""
    found = {strategy.name: strategy for strategy in BUILT_IN}
    for entry in os.environ.get("A2R_STRATEGIES", "").replace(",", " ").split():
        strategy = _load(entry)
        if strategy.name in found and found[strategy.name] is not strategy:
            raise ConfigurationError(
                f"A2R_STRATEGIES: {entry} is named {strategy.name!r}, like another strategy: "
                "give it a name of its own"
            )
        found[strategy.name] = strategy
    return found


def strategy(name: str) -> Strategy:
    """The strategy called ``name``; ``ConfigurationError`` listing the names otherwise."""
    found = strategies()
    if name not in found:
        raise ConfigurationError(
            f"no strategy is named {name!r}: use one of {', '.join(found)} (a deployment "
            "adds its own with A2R_STRATEGIES=module:attribute)"
        )
    return found[name]


@cache
def _load(entry: str) -> Strategy:
    module, _, attribute = entry.partition(":")
    try:
        value = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigurationError(
            f"A2R_STRATEGIES: cannot load {entry!r} ({error}): name a Strategy as "
            "module:attribute, importable by this server"
        ) from None
    if not isinstance(value, Strategy):
        raise ConfigurationError(
            f"A2R_STRATEGIES: {entry} is a {type(value).__name__}, not a "
            "a2r_graph.serving.registry.Strategy"
        )
    return value
