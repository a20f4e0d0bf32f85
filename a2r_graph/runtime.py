"""Reading the run's context from a node's ``Runtime``."""

from __future__ import annotations

from langgraph.runtime import Runtime

from a2r_graph.context import A2RContext


def context_of(runtime: Runtime[A2RContext]) -> A2RContext:
    """The run's context; built from the environment when the caller passed none."""
    return runtime.context if runtime.context is not None else A2RContext()
