"""API keys: read from the variable the config names, and never written anywhere.

A run against a server that requires a key (the loopback server, as ``vllm serve --api-key``)
with message content traced into a real Phoenix: the key must not appear in the CLI's output
or errors, the SQLite checkpoints, or any span. A wrong key fails with the server's 401 and
without the key in the message.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.error
import urllib.request
import uuid

import pytest

from tests.integration.conftest import a2r, stage_env
from tests.loopback import LoopbackServer
from tests.phoenix_spans import wait_for_spans

pytestmark = pytest.mark.integration
KEY_ENV = "A2R_TEST_SECRET_KEY"


@pytest.fixture
def keyed_server(monkeypatch):
    key = f"sk-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, key)
    with LoopbackServer(models=("explore", "synth"), api_key_env=KEY_ENV) as server:
        yield server, key


def key_env(server: LoopbackServer, variable: str, **extra: str) -> dict:
    return stage_env(
        (server.base_url, "explore"),
        (server.base_url, "synth"),
        A2R_EXPLORER__API_KEY_ENV=variable,
        A2R_SYNTHESIZER__API_KEY_ENV=variable,
        **extra,
    )


def test_the_key_reaches_the_server_and_nothing_else(keyed_server, phoenix, tmp_path):
    server, key = keyed_server
    with pytest.raises(urllib.error.HTTPError) as refused:  # the server does require it
        urllib.request.urlopen(f"{server.base_url}/models", timeout=10)
    assert refused.value.code == 401

    db = tmp_path / "threads.sqlite"
    env = key_env(
        server,
        KEY_ENV,
        A2R_CHECKPOINT_DB=str(db),
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
        **phoenix.otel_env("a2r-secrets", project="a2r-secrets"),
    )
    done = a2r("ask", "What is 2 + 3?", "--n", "2", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["boxed_answer"] == "5"

    spans = wait_for_spans(
        phoenix, lambda s: sum(x["name"].startswith("chat ") for x in s) >= 3, project="a2r-secrets"
    )
    traced = json.dumps(spans)
    assert "What is 2 + 3?" in traced  # content was captured, so the check means something
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT checkpoint FROM checkpoints").fetchall()
    assert rows and any(b"What is 2 + 3?" in bytes(row[0]) for row in rows)
    for name, text in {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "spans": traced,
        "checkpoints": db.read_bytes().decode("latin-1"),
    }.items():
        assert key not in text, f"the API key leaked into {name}"


def test_a_wrong_or_missing_key_fails_clearly_without_showing_it(keyed_server, monkeypatch):
    server, _ = keyed_server
    wrong = f"sk-wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv("A2R_TEST_WRONG_KEY", wrong)
    failed = a2r("ask", "What is 2 + 3?", "--n", "1", env=key_env(server, "A2R_TEST_WRONG_KEY"))
    assert failed.returncode == 1
    assert "was rejected with HTTP 401" in failed.stderr
    assert wrong not in failed.stderr and wrong not in failed.stdout

    unset = key_env(server, "A2R_TEST_UNSET_KEY")
    unset.pop("A2R_TEST_UNSET_KEY", None)
    missing = a2r("ask", "What is 2 + 3?", "--n", "1", env=unset)
    assert missing.returncode != 0
    assert "api_key_env names 'A2R_TEST_UNSET_KEY', which is not set" in missing.stderr
    assert os.environ[KEY_ENV] not in missing.stderr
