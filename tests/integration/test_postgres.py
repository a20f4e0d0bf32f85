"""Saved runs in a real PostgreSQL (Debian's ``postgresql``, started on a loopback port): the
process serving a run is SIGKILLed with its explorers finished and the synthesis in flight;
restarted on the same database, the run finishes with zero new explorer calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from langgraph_sdk import get_client

from servers.postgres import PostgresServer
from tests.integration.conftest import A2R, langgraph_dev
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
QUESTION = "What is 17 + 25?"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def loop() -> Iterator[LoopbackServer]:
    with LoopbackServer(models=("explore", "synth")) as server:
        yield server


def loop_env(loop: LoopbackServer, dsn: str, n: int) -> dict[str, str]:
    return {
        "A2R_EXPLORER__BASE_URL": loop.base_url,
        "A2R_EXPLORER__MODEL": "explore",
        "A2R_SYNTHESIZER__BASE_URL": loop.base_url,
        "A2R_SYNTHESIZER__MODEL": "synth",
        "A2R_N": str(n),
        "A2R_CHECKPOINT_DB": dsn,
    }


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def synthesis_in_flight(loop: LoopbackServer, n: int) -> bool:
    stats = loop.stats()
    return stats["completed"].get("explore", 0) == n and stats["requests"].get("synth", 0) >= 1


def test_the_cli_resumes_a_killed_run_from_postgres(postgres, loop):
    loop.inject_fault(model="synth", hang=True)
    env = {**os.environ, **loop_env(loop, postgres.dsn, 4)}
    run = subprocess.Popen([A2R, "ask", QUESTION, "--thread", "pg-cli"], env=env)
    wait_for(lambda: synthesis_in_flight(loop, 4), "the explorers never finished")
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    loop.clear_faults()

    done = subprocess.run(
        [A2R, "resume", "pg-cli", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["boxed_answer"] == "42"
    assert loop.stats()["completed"] == {"explore": 4, "synth": 1}  # no explorer paid twice


def test_langgraph_dev_on_postgres_resumes_after_a_sigkill(postgres, loop, tmp_path):
    loop.inject_fault(model="synth", hang=True)
    env = {**loop_env(loop, postgres.dsn, 2), "A2R_SERVER_AUTH": "none"}

    async def start_run(url: str) -> str:
        client = get_client(url=url)
        thread = await client.threads.create()
        await client.runs.create(
            thread["thread_id"], "a2r", input={"question": QUESTION}, durability="sync"
        )
        return thread["thread_id"]

    with langgraph_dev(env, tmp_path / "first.log", "langgraph.postgres.json") as (url, process):
        thread_id = asyncio.run(start_run(url))
        wait_for(lambda: synthesis_in_flight(loop, 2), "the explorers never finished")
        os.killpg(process.pid, signal.SIGKILL)  # the server, mid-synthesis
        process.wait(timeout=30)
    loop.clear_faults()

    async def finish(url: str) -> dict:
        client = get_client(url=url)
        await client.threads.create(thread_id=thread_id, if_exists="do_nothing")
        return await client.runs.wait(thread_id, "a2r", input={"question": QUESTION})

    (tmp_path / "second").mkdir()
    with langgraph_dev(env, tmp_path / "second" / "second.log", "langgraph.postgres.json") as (
        url,
        _,
    ):
        result = asyncio.run(finish(url))
    assert result["boxed_answer"] == "42"
    assert loop.stats()["completed"]["explore"] == 2  # zero new explorer calls
    assert [p["index"] for p in result["paths"]] == [0, 1]
    # the second server has its own folder: the run can only have come back from PostgreSQL
    with psycopg.connect(postgres.dsn) as db:
        query = "SELECT count(*) FROM checkpoints WHERE thread_id = %s"
        assert db.execute(query, (thread_id,)).fetchone()[0] > 0


def test_runs_are_saved_in_a_postgres_that_asks_for_a_password(loop):
    """Password authentication on: the right password saves the run there; a wrong one is
    refused before any model call, the password shown nowhere."""
    password = f"pw-{uuid.uuid4().hex}"
    with PostgresServer(password=password) as secured:
        assert password in secured.dsn
        env = {**os.environ, **loop_env(loop, secured.dsn, 2)}
        done = subprocess.run(
            [A2R, "ask", QUESTION, "--thread", "pg-password", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["boxed_answer"] == "42"
        assert password not in done.stdout + done.stderr
        with psycopg.connect(secured.dsn) as db:
            query = "SELECT count(*) FROM checkpoints WHERE thread_id = %s"
            assert db.execute(query, ("pg-password",)).fetchone()[0] > 0
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(secured.dsn.replace(password, ""))  # it does ask for one

        wrong = f"wrong-{uuid.uuid4().hex}"
        env["A2R_CHECKPOINT_DB"] = secured.dsn.replace(password, wrong)
        explored = loop.stats()["requests"]
        refused = subprocess.run(
            [A2R, "ask", QUESTION, "--thread", "pg-password-2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert refused.returncode == 2, refused.stderr
    assert "cannot use A2R_CHECKPOINT_DB postgresql://***@127.0.0.1:" in refused.stderr
    assert 'password authentication failed for user "postgres"' in refused.stderr
    assert wrong not in refused.stderr + refused.stdout
    assert loop.stats()["requests"] == explored  # no model call
