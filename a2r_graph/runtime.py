"""Reading the run's context from a node's ``Runtime``."""

from __future__ import annotations

from langgraph.runtime import Runtime

from a2r_graph.context import A2RContext
from a2r_graph.run_options import run_context


def context_of(runtime: Runtime[A2RContext]) -> A2RContext:
    """The run's context: the ``A2RContext`` a (trusted) Python caller passed, else the
    deployment's (``A2R_*``) with the run's ``RunOptions`` applied (LangGraph Server)."""
    if isinstance(runtime.context, A2RContext):
        return runtime.context
    return run_context(runtime.context)
