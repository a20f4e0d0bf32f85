"""Durable runs: one A2R run per thread of a checkpointer, resumable after any failure.

With a checkpointer, LangGraph saves the state after every step and the writes of every
finished explorer branch as it finishes. So a run that fails (synthesizer down, explorers
down, a timeout, Ctrl-C) resumes on its thread without paying again for what finished:

- failed at the synthesizer, or stopped mid-explore: LangGraph's own resume
  (``ainvoke(None, thread)``) runs only the steps and branches that did not finish;
- failed because too few explorers succeeded: the question is run again on the thread, and
  ``dispatch`` keeps the paths the server answered, re-sending only the failed ones.

``resume`` picks the right one from the thread's saved state. LangGraph Server does the same
with its own checkpointer: post ``input: null`` to the thread, or the same question again.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph.state import CompiledStateGraph

from a2r_graph.context import A2RContext
from a2r_graph.errors import UnknownThreadError
from a2r_graph.state import A2ROutput, validated_question

OUTPUT_KEYS = tuple(A2ROutput.__annotations__)


def default_db_path() -> Path:
    """``$A2R_CHECKPOINT_DB``, else ``$XDG_STATE_HOME/a2r-graph/threads.sqlite``."""
    if path := os.environ.get("A2R_CHECKPOINT_DB"):
        return Path(path)
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "a2r-graph" / "threads.sqlite"


@asynccontextmanager
async def sqlite_checkpointer(path: str | os.PathLike[str]) -> AsyncIterator[AsyncSqliteSaver]:
    """LangGraph's SQLite checkpointer on ``path`` (``":memory:"``: nothing kept)."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        yield saver


def thread_config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def output_of(values: dict) -> A2ROutput:
    return A2ROutput(**{key: values[key] for key in OUTPUT_KEYS if key in values})


async def ask(
    graph: CompiledStateGraph, question: str, thread_id: str, context: A2RContext
) -> A2ROutput:
    """Answer ``question`` on the thread; if the thread holds an unfinished run of the same
    question, finish that one instead (asking again after a failure resumes it)."""
    question = validated_question(question)  # before anything is written
    snapshot = await graph.aget_state(thread_config(thread_id))
    if snapshot.next and snapshot.values.get("question") == question:
        return await resume(graph, thread_id, context)
    return await graph.ainvoke({"question": question}, thread_config(thread_id), context=context)


async def resume(graph: CompiledStateGraph, thread_id: str, context: A2RContext) -> A2ROutput:
    """Finish the thread's run, re-running only what did not finish; a finished run's result
    is returned as saved."""
    config = thread_config(thread_id)
    snapshot = await graph.aget_state(config)
    if not snapshot.values:
        raise UnknownThreadError(f"no run is saved under thread {thread_id!r}")
    if not snapshot.next:
        return output_of(snapshot.values)
    if "reduce" in snapshot.next:  # the explorers are done; too few of them were usable
        return await graph.ainvoke(
            {"question": snapshot.values["question"]}, config, context=context
        )
    return await graph.ainvoke(None, config, context=context)
