"""A strategy for the tests of ``a2r eval --graph``, registered as a deployment registers its
own (``A2R_STRATEGIES=tests.eval_strategies:TALLY``): like ``echo`` (its boxed answer is the
question's word count), but with two priced stages, a metric of its own and one nested per
model, and a server that is down for questions holding ``boom`` while ``DOWN`` is set.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Checkpointer

from a2r_graph.serving.registry import Strategy
from a2r_graph.state import StageUsage
from tests.strategies import ECHO, EchoInput

DOWN = {"boom": True}
"""While ``DOWN["boom"]``, a question holding "boom" fails (its server is down)."""
PRICE = 0.5
"""The cost of one word, in each stage."""


class TallyOutput(TypedDict):
    question: str
    answer: str
    boxed_answer: str | None
    usage: dict[str, StageUsage]
    switches: int
    written: dict[str, int]
    model: str


def _stage(words: int) -> StageUsage:
    return StageUsage(calls=1, input_tokens=words, output_tokens=words, cost=PRICE * words)


async def tally(state: EchoInput) -> dict[str, Any]:
    question = state["question"]
    if DOWN["boom"] and "boom" in question:
        raise RuntimeError("the large model's server is down")
    words = len(question.split())
    small, large = _stage(words), _stage(1)
    total = StageUsage(
        calls=2,
        input_tokens=words + 1,
        output_tokens=words + 1,
        cost=small["cost"] + large["cost"],
    )
    return {
        "answer": f"{question} \\boxed{{{words}}}",
        "boxed_answer": str(words),
        "usage": {"small": small, "large": large, "total": total},
        "switches": 2 * words,
        "written": {"small": words, "large": 1},
        "model": "not a number: no metric",
    }


def build(checkpointer: Checkpointer = None, context_schema: type | None = None) -> Any:
    builder = StateGraph(TallyOutput, input_schema=EchoInput, output_schema=TallyOutput)
    builder.add_node("tally", tally)
    builder.add_edge(START, "tally")
    builder.add_edge("tally", END)
    return builder.compile(checkpointer=checkpointer, name="tally")


TALLY = Strategy(
    **{
        **ECHO.__dict__,
        "name": "tally",
        "description": "Count a question's words (a test strategy).",
        "build": build,
        "output": TallyOutput,
        "answer_node": "tally",
    }
)
