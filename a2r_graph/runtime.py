"""Reading the run's context from a node's ``Runtime``."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

from langgraph.runtime import Runtime

from a2r_graph.context import A2RContext

C = TypeVar("C")


@runtime_checkable
class RunContext(Protocol):
    """What a door passes as a run's context instead of a whole context: options that
    resolve against the deployment (``a2r_graph.serving.run_options.RunOptions``)."""

    def to_context(self) -> Any: ...


def resolved_context(runtime: Runtime[Any], kind: type[C]) -> C:
    """The run's ``kind`` of context (a strategy's: ``A2RContext``, ``R2RContext`` ...): the
    one a (trusted) Python caller passed, a door's ``RunContext`` resolved, or the
    deployment's (``A2R_*``) when none was passed."""
    context = runtime.context
    if context is None:
        return kind()
    if isinstance(context, RunContext) and not isinstance(context, kind):
        context = context.to_context()
    if isinstance(context, kind):
        return context
    raise TypeError(
        f"a run's context must be a {kind.__name__} or a door's options resolving to one, "
        f"got {type(context).__name__}"
    )


def context_of(runtime: Runtime[Any]) -> A2RContext:
    """The A2R run's context (``resolved_context``)."""
    return resolved_context(runtime, A2RContext)
