"""The A2R graph: dispatch -> explore x N -> decide -> reduce -> synthesize.

``decide`` sends another wave of explorers, or ends the run by the shortcut (the policies of
``A2RContext``); without policies it goes straight on to ``reduce``."""

from __future__ import annotations

from functools import partial
from typing import Any, Unpack

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from a2r_graph.chat_models import ChatModelFactory, vllm_chat_model
from a2r_graph.context import A2RContext
from a2r_graph.nodes import decide, dispatch, explore, reduce, synthesize
from a2r_graph.stages import GRAPH
from a2r_graph.state import A2RInput, A2ROutput, A2RState
from a2r_graph.telemetry import GraphOptions
from a2r_graph.tracing import A2RTracer

A2RGraph = CompiledStateGraph[A2RState, Any, A2RInput, A2ROutput]
"""A compiled A2R graph (its context: ``A2RContext``, or ``RunOptions`` on a server)."""


def build_graph(
    chat_model: ChatModelFactory = vllm_chat_model,
    *,
    context_schema: type[BaseModel] = A2RContext,
    **options: Unpack[GraphOptions],
) -> A2RGraph:
    """Compile the A2R graph.

    ``chat_model`` maps a stage's endpoint to a chat model; ``options`` are the checkpointer
    and the OpenTelemetry providers (``GraphOptions``). ``context_schema`` is what callers pass:
    the whole ``A2RContext`` (trusted code), or ``RunOptions`` (a server's untrusted runs,
    over the deployment's ``A2R_*`` configuration: see ``a2r_graph.serving.server``).
    """
    builder: StateGraph[A2RState, Any, A2RInput, A2ROutput] = StateGraph(
        A2RState, context_schema=context_schema, input_schema=A2RInput, output_schema=A2ROutput
    )
    builder.add_node("dispatch", dispatch, destinations=("explore", "decide"))
    builder.add_node("explore", partial(explore, chat_model=chat_model))
    builder.add_node("decide", decide, destinations=("explore", "reduce", END))
    builder.add_node("reduce", reduce)
    builder.add_node("synthesize", partial(synthesize, chat_model=chat_model))
    builder.add_edge(START, "dispatch")
    builder.add_edge("explore", "decide")
    builder.add_edge("reduce", "synthesize")
    builder.add_edge("synthesize", END)
    compiled = builder.compile(checkpointer=options.get("checkpointer"), name=GRAPH)
    tracer = A2RTracer(options.get("tracer_provider"), options.get("meter_provider"))
    return compiled.with_config(callbacks=[tracer])


graph = build_graph()
"""The compiled graph with vLLM endpoints, for direct import. Its spans and metrics go to the
global OpenTelemetry providers: ``a2r_graph.telemetry.configure_from_env()`` installs them
from ``OTEL_*`` (the entry points do)."""
