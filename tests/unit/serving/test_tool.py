"""The A2R tool inside a parent agent (fake tool-calling model, fake A2R endpoints)."""

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from pydantic import ValidationError

from a2r_graph import build_graph
from a2r_graph.serving.tool import as_tool
from examples.agent import build_agent
from tests.fakes import ToolCallingFake, factory, make_context, reply, scripted


async def test_agent_calls_a2r_and_reads_its_answer():
    explorer = scripted(*[reply(f"so \\boxed{{{v}}}") for v in (12, 12)])
    synthesizer = scripted(reply("both agree: \\boxed{12}"))
    a2r = build_graph(factory(explorer, synthesizer))
    context = make_context().model_dump(mode="json")
    tool = as_tool(a2r, context=context)
    call = {"name": "a2r_reason", "args": {"question": "3*4?", "n": 2}, "id": "call-1"}
    agent_model = ToolCallingFake(
        messages=iter([AIMessage("", tool_calls=[call]), AIMessage("It is 12.")])
    )

    result = await build_agent(agent_model, [tool]).ainvoke({"messages": [("user", "3*4?")]})

    assert agent_model.__dict__["bound_tools"] == ["a2r_reason"]
    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_message.content.startswith("Final answer: 12")
    assert tool_message.artifact["boxed_answer"] == "12"
    assert len(tool_message.artifact["paths"]) == 2  # the tool's n overrode the context's 4
    assert explorer.calls[0][0].startswith("3*4?")
    assert result["messages"][-1].content == "It is 12."


async def test_a_return_direct_tool_ends_the_agent_with_its_answer():
    """Catches: ``return_direct`` not passed to the tool, or an agent loop that hands the
    result back to its model anyway (a small model then re-solves or garbles the answer)."""
    explorer = scripted(*[reply(f"so \\boxed{{{v}}}") for v in (12, 12)])
    a2r = build_graph(factory(explorer, scripted(reply("both agree: \\boxed{12}"))))
    tool = as_tool(a2r, context=make_context().model_dump(mode="json"), return_direct=True)
    call = {"name": "a2r_reason", "args": {"question": "3*4?", "n": 2}, "id": "call-1"}
    agent_model = ToolCallingFake(
        messages=iter([AIMessage("", tool_calls=[call]), AIMessage("It is 13.")])
    )

    result = await build_agent(agent_model, [tool]).ainvoke({"messages": [("user", "3*4?")]})

    final = result["messages"][-1]
    assert isinstance(final, ToolMessage) and final.content.startswith("Final answer: 12")
    assert [m.type for m in result["messages"]] == ["human", "ai", "tool"]


async def test_tool_schema_is_typed_and_validated():
    explorer = scripted()
    tool = as_tool(build_graph(factory(explorer, scripted())))
    schema = tool.tool_call_schema.model_json_schema()
    assert schema["required"] == ["question"]
    assert schema["properties"]["n"]["anyOf"][0]["maximum"] == 64
    with pytest.raises(ValidationError, match="n\n  Input should be greater than or equal to 1"):
        await tool.ainvoke({"question": "q", "n": 0})
    assert explorer.calls == []


async def test_compiled_graph_works_as_a_subgraph_node():
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    class Parent(TypedDict, total=False):
        question: str
        boxed_answer: str | None
        note: str

    explorer = scripted(reply("\\boxed{5}"), reply("\\boxed{5}"))
    a2r = build_graph(factory(explorer, scripted(reply("\\boxed{5}"))))
    builder = StateGraph(Parent)
    builder.add_node("a2r", a2r)
    builder.add_node("report", lambda state: {"note": f"A2R says {state['boxed_answer']}"})
    builder.add_edge(START, "a2r")
    builder.add_edge("a2r", "report")
    parent = builder.compile()
    result = await parent.ainvoke({"question": "2+3?"}, context=make_context(n=2))
    assert result["note"] == "A2R says 5"
