"""The database of saved runs refused before any run, with a message that names what is wrong
and never shows the DSN's password."""

from __future__ import annotations

import socket

import pytest

from a2r_graph import threads
from a2r_graph.errors import ConfigurationError
from a2r_graph.serving import server

PASSWORD = "s3cr3t-pw"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        (PASSWORD, "Connection refused"),  # nothing listens there
        (PASSWORD.replace("-", " "), "unexpected spaces found"),  # a malformed DSN
        (PASSWORD + "%zz", "invalid percent-encoded token"),
    ],
    ids=["unreachable", "space in the password", "bad percent-encoding"],
)
async def test_an_unusable_dsn_is_refused_with_the_password_hidden(password, reason):
    dsn = f"postgresql://a2r:{password}@127.0.0.1:{closed_port()}/runs"
    with pytest.raises(threads.CheckpointDatabaseError) as caught:
        async with threads.checkpointer_for(dsn):
            pytest.fail("an unusable database was accepted")
    message = str(caught.value)
    assert message.startswith("cannot use postgresql://***@127.0.0.1:")
    assert reason in message
    assert PASSWORD.split("-")[0] not in message  # nor any part of it
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("db", ["", "runs.sqlite", "mysql://a2r:pw@db/runs"])
async def test_the_server_refuses_a_checkpoint_db_that_is_not_postgres(db, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("A2R_CHECKPOINT_DB", db)
    with pytest.raises(ConfigurationError) as caught:
        async with server.checkpointer():
            pytest.fail("langgraph.postgres.json served without PostgreSQL")
    message = str(caught.value)
    assert "set A2R_CHECKPOINT_DB to a postgresql://user:password@host:port/dbname DSN" in message
    assert "pw" not in message.replace("password", "")
    assert list(tmp_path.iterdir()) == []  # no SQLite file made in its place
