"""What LangGraph Server serves (``langgraph.json``): each strategy's graph for untrusted
runs (``graph``: A2R, ``r2r``: R2R, ``r2reasoner``: R2-Reasoner), and auth.

A run that reaches the server is somebody else's input. ``graph`` takes ``RunOptions`` as its
context: how to sample, never which endpoint, key, prompts or prices (those are the
deployment's ``A2R_*`` variables; see ``a2r_graph.serving.run_options``). Every strategy of
``a2r_graph.serving.registry.BUILT_IN`` is a graph id of ``langgraph.json`` (a test says so).
``auth`` admits a request only with the deployment's key, ``A2R_SERVER_API_KEY``, in
``x-api-key`` (what ``langgraph_sdk.get_client(api_key=...)`` sends) or ``Authorization:
Bearer``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph_sdk import Auth

from a2r_graph.errors import ConfigurationError
from a2r_graph.serving.guard import authenticate
from a2r_graph.serving.registry import A2R, R2R, R2REASONER
from a2r_graph.telemetry import configure_from_env
from a2r_graph.threads import checkpointer_for, is_postgres

configure_from_env()  # LangGraph Server imports this module: its entry point
graph = A2R.served_graph()
"""The A2R graph as LangGraph Server runs it: a run's context is ``RunOptions``."""
r2r = R2R.served_graph()
"""The R2R graph (``a2r_graph.r2r``) as LangGraph Server runs it: its context is ``R2ROptions``."""
r2reasoner = R2REASONER.served_graph()
"""The R2-Reasoner graph (``a2r_graph.r2reasoner``): its context is ``ReasonerOptions``."""

auth = Auth()


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """LangGraph Server's checkpointer in PostgreSQL (``langgraph.postgres.json``): the
    threads' runs survive a restart of the server, on the DSN in ``A2R_CHECKPOINT_DB``."""
    db = os.environ.get("A2R_CHECKPOINT_DB", "")
    if not is_postgres(db):
        raise ConfigurationError(
            "langgraph.postgres.json keeps runs in PostgreSQL: set A2R_CHECKPOINT_DB to a "
            "postgresql://user:password@host:port/dbname DSN (or serve langgraph.json)"
        )
    async with checkpointer_for(db) as saver:
        yield saver


auth.authenticate(authenticate)
