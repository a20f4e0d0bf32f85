"""The A2R graph as a LangChain tool, for agents that call it to reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from a2r_graph.graph import graph as default_graph
from a2r_graph.state import A2ROutput

DESCRIPTION = (
    "Solve a hard reasoning or math problem carefully: several independent solvers attempt it "
    "in parallel and a stronger model synthesizes their answers into one final answer. Slow "
    "and costly: use it for problems that need careful multi-step reasoning. Pass the full, "
    "self-contained problem statement."
)


class A2RToolArgs(BaseModel):
    question: str = Field(min_length=1, description="The complete, self-contained problem.")
    n: int | None = Field(
        None, ge=1, le=64, description="Parallel solution attempts (default: the configured n)."
    )


def as_tool(
    a2r: Runnable = default_graph,
    *,
    context: dict[str, Any] | None = None,
    name: str = "a2r_reason",
    description: str = DESCRIPTION,
) -> BaseTool:
    """Wrap the A2R graph (local, or a ``RemoteGraph`` of a LangGraph Server) as a tool.

    ``context`` holds A2RContext fields for every call (endpoints, sampling...); unset
    fields come from the A2R_* environment (local) or the server's assistant (remote).
    The tool's content is the final answer and the synthesizer's reasoning; its artifact
    is the whole A2R result.
    """

    async def reason(question: str, n: int | None = None) -> tuple[str, A2ROutput]:
        run_context = {**(context or {}), **({"n": n} if n is not None else {})}
        result = await a2r.ainvoke({"question": question}, context=run_context or None)
        return tool_content(result), result

    return StructuredTool.from_function(
        coroutine=reason,
        name=name,
        description=description,
        args_schema=A2RToolArgs,
        response_format="content_and_artifact",
    )


def tool_content(result: Mapping[str, Any]) -> str:
    final = result["boxed_answer"] or "(no boxed answer)"
    return f"Final answer: {final}\n\nReasoning:\n{result['answer']}"
