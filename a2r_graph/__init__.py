"""A2R (asymmetric two-stage parallel reasoning) as a LangGraph graph."""

from a2r_graph.answers import last_boxed, split_reasoning
from a2r_graph.context import A2RContext, StageConfig
from a2r_graph.errors import (
    A2RError,
    ConfigurationError,
    ContextOverflowError,
    EndpointUnavailableError,
    InvalidQuestionError,
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
from a2r_graph.threads import ask, resume, sqlite_checkpointer

__all__ = [
    "A2RContext",
    "A2RError",
    "A2RInput",
    "A2ROutput",
    "A2RState",
    "Completion",
    "ConfigurationError",
    "ContextOverflowError",
    "EndpointUnavailableError",
    "ExplorerPath",
    "InvalidQuestionError",
    "MissingUsageError",
    "ModelRequestError",
    "NotEnoughPathsError",
    "ReferenceFit",
    "StageConfig",
    "UnknownThreadError",
    "ask",
    "build_graph",
    "graph",
    "last_boxed",
    "resume",
    "split_reasoning",
    "sqlite_checkpointer",
]
