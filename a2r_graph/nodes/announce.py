"""A policy decision, told to whoever watches the run."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import adispatch_custom_event
from langgraph.runtime import Runtime


async def announce(runtime: Runtime[Any], event: str, **data: Any) -> None:
    """``event`` as a ``custom`` stream event (``{"event": event, **data}``) and as a LangChain
    custom event, which ``a2r_graph.tracing`` records on the run's span."""
    runtime.stream_writer({"event": event, **data})
    await adispatch_custom_event(f"a2r.{event}", data)
