"""A strategy's graph as a LangChain tool, for agents that call it to reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool

from a2r_graph.serving import registry
from a2r_graph.serving.registry import DEFAULT, Strategy
from a2r_graph.serving.render import tool_text


def as_tool(
    graph: Runnable | str = DEFAULT,
    *,
    strategy: Strategy | str | None = None,
    context: dict[str, Any] | None = None,
    name: str | None = None,
    description: str | None = None,
    return_direct: bool = False,
) -> BaseTool:
    """Wrap a strategy's graph as a tool: a registered name (``"a2r"``: built here, with the
    deployment's ``A2R_*``), or a graph of one (local, or a ``RemoteGraph`` of a LangGraph
    Server) with ``strategy`` saying which (a ``Strategy``, or its registered name; default
    ``a2r``).

    ``context`` holds context fields for every call (endpoints, sampling...); unset fields
    come from the A2R_* environment (local) or the server's assistant (remote). The tool's
    arguments are the strategy's (``question``, and for A2R ``n``); its content is the final
    answer and the answer's text; its artifact is the whole result. ``return_direct``: an
    agent ends with the tool's result as its final answer instead of writing one (for small
    agent models, which tend to re-solve or garble the answer they were given).
    """
    if isinstance(strategy, Strategy):
        chosen = strategy
    else:
        chosen = registry.strategy(graph if isinstance(graph, str) else strategy or DEFAULT)
    runnable = chosen.graph() if isinstance(graph, str) else graph

    async def reason(**passed: Any) -> tuple[str, Mapping[str, Any]]:
        arguments = chosen.arguments.model_validate(passed)
        run_context = {**(context or {}), **chosen.options_of(arguments)}
        result = await runnable.ainvoke(
            {"question": arguments.question},  # type: ignore[attr-defined]
            context=run_context or None,
        )
        return tool_text(result), result

    return StructuredTool.from_function(
        coroutine=reason,
        name=name or f"{chosen.name}_reason",
        description=description or chosen.description,
        args_schema=chosen.arguments,
        response_format="content_and_artifact",
        return_direct=return_direct,
    )
