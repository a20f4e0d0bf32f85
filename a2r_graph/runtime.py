"""Reading the run's context from a node's ``Runtime``."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from langgraph.runtime import Runtime

from a2r_graph.context import A2RContext


@runtime_checkable
class RunContext(Protocol):
    """What a door passes as a run's context instead of a whole ``A2RContext``: options that
    resolve against the deployment (``a2r_graph.serving.run_options.RunOptions``)."""

    def to_context(self) -> A2RContext: ...


def context_of(runtime: Runtime[Any]) -> A2RContext:
    """The run's context: the ``A2RContext`` a (trusted) Python caller passed, a door's
    ``RunContext`` resolved, or the deployment's (``A2R_*``) when none was passed."""
    context = runtime.context
    if isinstance(context, A2RContext):
        return context
    if context is None:
        return A2RContext()
    if isinstance(context, RunContext):
        return context.to_context()
    raise TypeError(
        f"a run's context must be an A2RContext or RunOptions, got {type(context).__name__}"
    )
