"""Map step: validate the question and send it to N explorer branches."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Command, Overwrite, Send
from pydantic import ValidationError

from a2r_graph.context import A2RContext
from a2r_graph.errors import InvalidQuestionError
from a2r_graph.runtime import context_of
from a2r_graph.state import A2RInput, A2RInputModel, ExplorerTask


def dispatch(state: A2RInput, runtime: Runtime[A2RContext]) -> Command[Literal["explore"]]:
    try:
        question = A2RInputModel(question=state.get("question")).question
    except ValidationError as error:
        raise InvalidQuestionError(
            f"question must be a non-empty string, got {state.get('question')!r}: "
            "pass {'question': '...'}"
        ) from error
    n = context_of(runtime).n
    return Command(
        # A thread may hold an earlier run: start this one from empty results.
        update={"question": question, "paths": Overwrite([]), "usage": Overwrite({})},
        goto=[Send("explore", ExplorerTask(question=question, index=i)) for i in range(n)],
    )
