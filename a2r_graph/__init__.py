"""A2R (asymmetric two-stage parallel reasoning) as a LangGraph graph.

The public names load on first use (PEP 562), so ``import a2r_graph.train.grpo`` (training on a
GPU machine) or ``a2r_graph.answers`` does not import LangGraph, LangChain or OpenAI.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from a2r_graph.answers import last_boxed, split_reasoning
    from a2r_graph.context import A2RContext, StageConfig
    from a2r_graph.errors import (
        A2RError,
        ConfigurationError,
        ContextOverflowError,
        EndpointUnavailableError,
        InvalidQuestionError,
        MalformedReplyError,
        MissingUsageError,
        ModelRequestError,
        NotEnoughPathsError,
        UnknownThreadError,
    )
    from a2r_graph.graph import build_graph, graph
    from a2r_graph.state import (
        A2RInput,
        A2ROutput,
        A2RState,
        Completion,
        ExplorerPath,
        ReferenceFit,
    )
    from a2r_graph.threads import (
        CheckpointDatabaseError,
        ask,
        checkpointer_for,
        resume,
        sqlite_checkpointer,
    )

_EXPORTS = {
    "last_boxed": "a2r_graph.answers",
    "split_reasoning": "a2r_graph.answers",
    "A2RContext": "a2r_graph.context",
    "StageConfig": "a2r_graph.context",
    "A2RError": "a2r_graph.errors",
    "ConfigurationError": "a2r_graph.errors",
    "ContextOverflowError": "a2r_graph.errors",
    "EndpointUnavailableError": "a2r_graph.errors",
    "InvalidQuestionError": "a2r_graph.errors",
    "MalformedReplyError": "a2r_graph.errors",
    "MissingUsageError": "a2r_graph.errors",
    "ModelRequestError": "a2r_graph.errors",
    "NotEnoughPathsError": "a2r_graph.errors",
    "UnknownThreadError": "a2r_graph.errors",
    "build_graph": "a2r_graph.graph",
    "graph": "a2r_graph.graph",
    "A2RInput": "a2r_graph.state",
    "A2ROutput": "a2r_graph.state",
    "A2RState": "a2r_graph.state",
    "Completion": "a2r_graph.state",
    "ExplorerPath": "a2r_graph.state",
    "ReferenceFit": "a2r_graph.state",
    "CheckpointDatabaseError": "a2r_graph.threads",
    "ask": "a2r_graph.threads",
    "resume": "a2r_graph.threads",
    "sqlite_checkpointer": "a2r_graph.threads",
    "checkpointer_for": "a2r_graph.threads",
}

__all__ = [
    "A2RContext",
    "A2RError",
    "A2RInput",
    "A2ROutput",
    "A2RState",
    "CheckpointDatabaseError",
    "Completion",
    "ConfigurationError",
    "ContextOverflowError",
    "EndpointUnavailableError",
    "ExplorerPath",
    "InvalidQuestionError",
    "MalformedReplyError",
    "MissingUsageError",
    "ModelRequestError",
    "NotEnoughPathsError",
    "ReferenceFit",
    "StageConfig",
    "UnknownThreadError",
    "ask",
    "build_graph",
    "checkpointer_for",
    "graph",
    "last_boxed",
    "resume",
    "split_reasoning",
    "sqlite_checkpointer",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # a submodule (`from a2r_graph import threads`) is imported by Python then
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``a2r_graph.graph`` names both a submodule and the compiled graph it exports. Importing
    the submodule binds it on the package; as when the package imported it eagerly, the name
    stays the compiled graph."""

    @property
    def graph(self) -> Any:
        return import_module("a2r_graph.graph").graph

    @graph.setter
    def graph(self, value: Any) -> None:
        pass  # the import system binding the submodule


sys.modules[__name__].__class__ = _Package
