"""An agent that uses A2R as its reasoning tool.

The agent's own model (any tool-calling chat model) decides when a problem deserves A2R;
the A2R tool runs the graph locally (A2R_* environment) or, with --server, through a
LangGraph Server via RemoteGraph.

    export AGENT_BASE_URL=http://127.0.0.1:8003/v1 AGENT_MODEL=Qwen3-8B   # e.g. vllm serve
        # ... --enable-auto-tool-choice --tool-call-parser hermes
    python examples/agent.py "A train leaves at ..." [--server http://127.0.0.1:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from functools import partial

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from a2r_graph.serving.tool import as_tool


def build_agent(
    model: BaseChatModel, tools: list[BaseTool], first_tool_choice: str | None = None
) -> CompiledStateGraph:
    """A minimal ReAct loop: the model calls tools until it answers, or until a tool made with
    ``return_direct`` answered (its result is the final answer, as in LangGraph's prebuilt
    agent). ``first_tool_choice`` names a tool the first turn must call (a small model does
    not always choose to)."""
    bound = model.bind_tools(tools)
    first = (
        model.bind_tools(tools, tool_choice=first_tool_choice, strict=True)
        if first_tool_choice
        else bound
    )

    async def agent(state: MessagesState) -> dict:
        answered = any(message.type == "ai" for message in state["messages"])
        return {"messages": [await (bound if answered else first).ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_conditional_edges("tools", partial(_after_tools, tools), ["agent", END])
    return builder.compile()


def _after_tools(tools: list[BaseTool], state: MessagesState) -> str:
    direct = {tool.name for tool in tools if tool.return_direct}
    results = itertools.takewhile(lambda m: m.type == "tool", reversed(state["messages"]))
    return END if any(m.name in direct for m in results) else "agent"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument(
        "--server", help="LangGraph Server URL serving the 'a2r' graph (key: $LANGGRAPH_API_KEY)"
    )
    args = parser.parse_args()

    from langchain_openai import ChatOpenAI
    from langgraph.pregel.remote import RemoteGraph

    # RemoteGraph sends no key unless given one: the server's A2R_SERVER_API_KEY.
    key = os.environ.get("LANGGRAPH_API_KEY")
    a2r = RemoteGraph("a2r", url=args.server, api_key=key) if args.server else None
    tool = as_tool(a2r) if a2r is not None else as_tool()
    model = ChatOpenAI(
        base_url=os.environ["AGENT_BASE_URL"], model=os.environ["AGENT_MODEL"], api_key="EMPTY"
    )
    result = await build_agent(model, [tool]).ainvoke({"messages": [("user", args.question)]})
    for message in result["messages"]:
        message.pretty_print()


if __name__ == "__main__":
    asyncio.run(main())
