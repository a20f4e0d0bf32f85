"""A2R (asymmetric two-stage parallel reasoning) as a LangGraph graph."""

from a2r_graph.answers import last_boxed, split_reasoning
from a2r_graph.context import A2RContext, StageConfig
from a2r_graph.errors import (
    A2RError,
    EndpointUnavailableError,
    InvalidQuestionError,
    MissingUsageError,
    ModelRequestError,
    NotEnoughPathsError,
)
from a2r_graph.graph import build_graph, graph
from a2r_graph.state import A2RInput, A2ROutput, A2RState, Completion, ExplorerPath

__all__ = [
    "A2RContext",
    "A2RError",
    "A2RInput",
    "A2ROutput",
    "A2RState",
    "Completion",
    "EndpointUnavailableError",
    "ExplorerPath",
    "InvalidQuestionError",
    "MissingUsageError",
    "ModelRequestError",
    "NotEnoughPathsError",
    "StageConfig",
    "build_graph",
    "graph",
    "last_boxed",
    "split_reasoning",
]
