"""Durable runs: one A2R run per thread of a checkpointer, resumable after any failure.

With a checkpointer, LangGraph saves the state after every step and the writes of every
finished explorer branch as it finishes. So a run that fails (synthesizer down, explorers
down, a timeout, Ctrl-C) resumes on its thread without paying again for what finished:

- failed at the synthesizer, or stopped mid-explore: LangGraph's own resume
  (``ainvoke(None, thread)``) runs only the steps and branches that did not finish;
- failed because too few explorers succeeded: the question is run again on the thread, and
  ``dispatch`` keeps the usable paths, re-sending only the failed and unusable ones (see
  ``state.reusable_paths``).

``resume`` picks the right one from the thread's saved state. LangGraph Server does the same
with its own checkpointer: post ``input: null`` to the thread, or the same question again.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from a2r_graph.context import A2RContext, redact_url
from a2r_graph.errors import ConfigurationError, UnknownThreadError
from a2r_graph.state import A2ROutput, changed_settings, explorer_settings, validated_question

if TYPE_CHECKING:
    from a2r_graph.graph import A2RGraph

OUTPUT_KEYS = tuple(A2ROutput.__annotations__)


def default_db_path() -> Path | str:
    """``$A2R_CHECKPOINT_DB`` (a SQLite path or a PostgreSQL DSN), else
    ``$XDG_STATE_HOME/a2r-graph/threads.sqlite``."""
    if path := os.environ.get("A2R_CHECKPOINT_DB"):
        return path if is_postgres(path) else Path(path)
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "a2r-graph" / "threads.sqlite"


class CheckpointDatabaseError(ConfigurationError):
    """The database of saved runs cannot be used: a SQLite file that cannot be created, read
    or written (a directory, not a SQLite file, read-only, a folder that cannot be made), or
    a PostgreSQL server that refuses the DSN. Raised before any model call."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot use {self.path} to save runs: {reason}")


def check_database(path: str | os.PathLike[str]) -> None:
    """Raise ``CheckpointDatabaseError`` unless ``path`` can hold saved runs: its folder
    exists or can be made, and it is (or can become) a SQLite file this process can write."""
    if str(path) == ":memory:":
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise CheckpointDatabaseError(
            path, f"its folder {path.parent} cannot be made: a file is in the way"
        ) from error
    except OSError as error:
        raise CheckpointDatabaseError(
            path, f"its folder {path.parent} cannot be made ({error.strerror or error})"
        ) from error
    if path.is_dir():
        raise CheckpointDatabaseError(path, "it is a directory")
    try:
        # A short busy timeout: a file another run is writing is in use, not unusable.
        with closing(sqlite3.connect(path, timeout=0.1)) as conn:
            conn.execute("PRAGMA schema_version").fetchone()  # "file is not a database"
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE a2r_write_probe (x)")  # "readonly database"
            conn.rollback()
    except sqlite3.Error as error:
        if getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return
        raise CheckpointDatabaseError(path, str(error)) from error


class _DrainedSqliteSaver(AsyncSqliteSaver):
    """``AsyncSqliteSaver`` whose connection closes only after the writes in flight.

    A cancelled run (Ctrl-C, a timeout) records its cancelled tasks while LangGraph shuts
    the run down, in writes it does not wait for. Closing the connection under one of them
    leaves its transaction open on a connection SQLite cannot close yet: it keeps the write
    lock, and every later run of the process on that file fails with "database is locked"."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self._writes = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        self._writes += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._writes -= 1
            if not self._writes:
                self._idle.set()

    async def aput(self, *args: Any, **kwargs: Any) -> RunnableConfig:
        async with self._writing():
            return await super().aput(*args, **kwargs)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        async with self._writing():
            await super().aput_writes(*args, **kwargs)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (at most ``timeout_s``) for the writes in flight, those of tasks just
        created included."""
        for _ in range(3):
            await asyncio.sleep(0)
        idle = asyncio.ensure_future(self._idle.wait())
        await asyncio.wait({idle}, timeout=timeout_s)
        idle.cancel()


@asynccontextmanager
async def sqlite_checkpointer(path: str | os.PathLike[str]) -> AsyncIterator[AsyncSqliteSaver]:
    """LangGraph's SQLite checkpointer on ``path`` (``":memory:"``: nothing kept).

    Raises ``CheckpointDatabaseError`` up front when ``path`` cannot be used (see
    ``check_database``). On exit, even when the run was cancelled, the connection closes
    after the writes in flight."""
    check_database(path)
    async with aiosqlite.connect(str(path)) as conn:
        saver = _DrainedSqliteSaver(conn)
        try:
            yield saver
        finally:
            await saver.drain()


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(db: str | os.PathLike[str]) -> bool:
    """Whether ``db`` is a PostgreSQL DSN (``postgresql://user@host:port/dbname``)."""
    return str(db).startswith(POSTGRES_SCHEMES)


@asynccontextmanager
async def checkpointer_for(db: str | os.PathLike[str]) -> AsyncIterator[BaseCheckpointSaver]:
    """The saved runs' checkpointer: LangGraph's ``AsyncPostgresSaver`` for a PostgreSQL DSN
    (its tables are created on first use), else ``sqlite_checkpointer(db)``. Raises
    ``CheckpointDatabaseError`` (the DSN's password hidden) when the database cannot be used."""
    if not is_postgres(db):
        async with sqlite_checkpointer(db) as saver:
            yield saver
        return
    shown = redact_url(str(db))
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import OperationalError, ProgrammingError
    except ImportError:
        raise CheckpointDatabaseError(
            shown, "PostgreSQL needs the postgres extra: pip install 'a2r-graph[postgres]'"
        ) from None
    async with AsyncExitStack() as stack:
        try:
            postgres = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(str(db)))
            await postgres.setup()
        # Before any run: the database is unusable (OperationalError), or the DSN malformed
        # (ProgrammingError, which quotes the bad part: it may be the password).
        except (OperationalError, ProgrammingError) as error:
            reason = (str(error).splitlines() or ["unreachable"])[0]
            raise CheckpointDatabaseError(shown, _without_password(reason, str(db))) from None
        yield postgres


def _without_password(text: str, dsn: str) -> str:
    """``text`` with the DSN, and its password as written or decoded, replaced by ***."""
    text = text.replace(dsn, redact_url(dsn))
    userinfo = urlsplit(dsn).netloc.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return text


async def holds_unfinished_run(graph: A2RGraph, thread_id: str) -> bool:
    """Whether the graph's checkpointer holds a run on the thread that ``resume`` can finish."""
    snapshot = await graph.aget_state(thread_config(thread_id))
    return bool(snapshot.values) and bool(snapshot.next)


def thread_config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


async def run(
    graph: A2RGraph, values: Any, thread_id: str, context: Any, **options: Any
) -> dict[str, Any]:
    """``graph.ainvoke`` on the thread, each step saved before the next one starts: with
    LangGraph's default durability (``"async"``) a step is saved while the next one runs, so a
    process killed mid-synthesis could lose the explorers' step and pay for it again."""
    config = thread_config(thread_id)
    return await graph.ainvoke(values, config, context=context, durability="sync", **options)


def output_of(values: Mapping[str, Any]) -> A2ROutput:
    return cast(A2ROutput, {key: values[key] for key in OUTPUT_KEYS if key in values})


async def ask(graph: A2RGraph, question: str, thread_id: str, context: A2RContext) -> A2ROutput:
    """Answer ``question`` on the thread; if the thread holds an unfinished run of the same
    question, finish that one instead (asking again after a failure resumes it)."""
    question = validated_question(question)  # before anything is written
    snapshot = await graph.aget_state(thread_config(thread_id))
    if snapshot.next and snapshot.values.get("question") == question:
        return await resume(graph, thread_id, context)
    return output_of(await run(graph, {"question": question}, thread_id, context))


async def resume(graph: A2RGraph, thread_id: str, context: A2RContext) -> A2ROutput:
    """Finish the thread's run, re-running only what did not finish; a finished run's result
    is returned as saved."""
    config = thread_config(thread_id)
    snapshot = await graph.aget_state(config)
    if not snapshot.values:
        raise UnknownThreadError(f"no run is saved under thread {thread_id!r}")
    if not snapshot.next:
        return output_of(snapshot.values)
    question = snapshot.values["question"]
    try:
        changed = changed_settings(snapshot.values, explorer_settings(context, question))
    except ValueError:  # a prompts_dir gone or broken: the run's nodes report it, as before
        changed = []
    if {"decide", "reduce"} & set(snapshot.next) or changed:
        # the explorers are done (too few usable, or some unanswered), or their paths were
        # sampled with other settings: ask again, so that dispatch keeps the answered paths
        # (none of other settings) and samples the others
        return output_of(await run(graph, {"question": question}, thread_id, context))
    return output_of(await run(graph, None, thread_id, context))
