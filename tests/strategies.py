"""A second, trivial strategy, registered the way a deployment registers its own
(``A2R_STRATEGIES=tests.strategies:ECHO``): every door must serve it like A2R.

``echo`` answers a question with its words, ``repeat`` times (a caller's option, 1 to 3),
written by a scripted chat model so that its tokens stream like a model's; the boxed answer
is the number of words written. No model server is called.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer
from pydantic import BaseModel, ConfigDict, Field

from a2r_graph.serving.registry import Strategy
from a2r_graph.state import StageUsage, TokenUsage


class EchoContext(BaseModel):
    repeat: int = Field(1, ge=1, le=3)


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    repeat: int | None = Field(None, ge=1, le=3, description="How many times to echo.")

    def to_context(self) -> EchoContext:
        return EchoContext(**self.model_dump(exclude_none=True))


class EchoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    question: str = Field(min_length=1, description="What to echo.")
    repeat: int | None = Field(None, ge=1, le=3, description="How many times to echo.")


class EchoInput(TypedDict):
    question: str


class EchoOutput(TypedDict):
    question: str
    answer: str
    boxed_answer: str | None
    usage: dict[str, StageUsage]
    words: int


def expected_answer(question: str, repeat: int = 1) -> str:
    words = question.split() * repeat
    return f"{' '.join(words)} \\boxed{{{len(words)}}}"


async def echo(state: EchoInput, runtime: Runtime[Any]) -> dict[str, Any]:
    context = runtime.context
    if isinstance(context, EchoOptions):
        context = context.to_context()
    repeat = (context or EchoContext()).repeat
    answer = expected_answer(state["question"], repeat)
    reply = await GenericFakeChatModel(messages=iter([AIMessage(answer)])).ainvoke(answer)
    words = len(state["question"].split()) * repeat
    written = TokenUsage(input_tokens=words // repeat, output_tokens=words, cost=0.0)
    usage = StageUsage(calls=1, **written)
    return {
        "answer": reply.content,
        "boxed_answer": str(words),
        "usage": {"echo": usage, "total": usage},
        "words": words,
    }


def build(checkpointer: Checkpointer = None, context_schema: type = EchoContext) -> Any:
    builder = StateGraph(
        EchoOutput, context_schema=context_schema, input_schema=EchoInput, output_schema=EchoOutput
    )
    builder.add_node("echo", echo)
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return builder.compile(checkpointer=checkpointer, name="echo")


ECHO = Strategy(
    name="echo",
    description="Echo a question's words (a test strategy).",
    build=build,
    options=EchoOptions,
    arguments=EchoArguments,
    output=EchoOutput,
    answer_node="echo",
)
graph = ECHO.served_graph()
"""What LangGraph Server serves under the graph id ``echo``."""

SHADOW = Strategy(**{**ECHO.__dict__, "name": "a2r"})
"""A deployment's strategy under a built-in's name: refused."""
