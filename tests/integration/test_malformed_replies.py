"""Malformed replies from a real HTTP server (the loopback server's fault injection), through the
real graph and the real ``ChatVLLM`` client: a 200 that is not JSON, invalid JSON,
``"choices": []``, a null message, non-integer token counts, a stream without usage, and a
429/503 with ``Retry-After``.

A bad explorer reply is a failed attempt: retried (the loopback's /admin/stats counts every
request), then recorded in ``paths[i]["error"]`` with a clear message while the other paths
succeed and the run goes on; a bad synthesizer reply fails the run with an
``EndpointUnavailableError`` naming the endpoint. Never a traceback, in the result or the logs.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from a2r_graph import EndpointUnavailableError, MissingUsageError, build_graph
from a2r_graph.context import A2RContext
from tests.integration.conftest import a2r, stage_env
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
QUESTION = "What is 17 + 25?"

WHAT_WAS_WRONG = {
    "not-json": "the reply is not a JSON object: <html><body><h1>502 Bad Gateway",
    "invalid-json": "the reply is not valid JSON (",
    "empty-choices": "the reply has no `choices`: []",
    "null-message": "choices[0].message is not a message object",
    "bad-usage": "usage.prompt_tokens is not a token count: n/a",
}
"""What the path's error says for each loopback ``reply`` fault, in a whole (unstreamed) reply."""

STREAMED = {
    "no-usage": "the streamed reply ended without `usage`",
    "not-json": "the streamed reply carried no choice",
    "invalid-json": "the reply is not valid JSON (",
    "empty-choices": "the streamed reply carried no choice",
}
"""The same, in a streamed reply (a run streamed with ``stream_mode="messages"``)."""


@pytest.fixture(scope="module")
def loopback():
    with LoopbackServer(models=("explore", "synth")) as server:
        yield server


@pytest.fixture
def server(loopback):
    loopback.clear_faults()
    yield loopback
    loopback.clear_faults()


def context(server: LoopbackServer, **overrides) -> A2RContext:
    fields = {
        "explorer": {"base_url": server.base_url, "model": "explore", "max_tokens": 256},
        "synthesizer": {"base_url": server.base_url, "model": "synth", "max_tokens": 256},
        "n": 4,
        "max_attempts": 3,
        "retry_initial_wait_s": 0.05,
        "retry_max_wait_s": 2.0,
        "request_timeout_s": 30,
        **overrides,
    }
    return A2RContext(**fields)


class Counts:
    """Requests the loopback server saw since this was made, per model and counter."""

    def __init__(self, server: LoopbackServer):
        self.server, self.before = server, server.stats()

    def __call__(self, counter: str, model: str) -> int:
        now = self.server.stats()
        return now[counter].get(model, 0) - self.before[counter].get(model, 0)


async def run(server: LoopbackServer, *, stream: bool = False, **overrides) -> dict:
    graph, ctx = build_graph(), context(server, **overrides)
    if not stream:
        return await graph.ainvoke({"question": QUESTION}, context=ctx)
    result = None  # stream_mode="messages" makes the chat models stream their replies
    async for mode, part in graph.astream(
        {"question": QUESTION}, context=ctx, stream_mode=["messages", "values"]
    ):
        if mode == "values":
            result = part
    return result


def assert_no_traceback(caplog, capfd):
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err):
        assert "Traceback" not in text and "IndexError" not in text
        assert "Error in A2RTracer" not in text  # LangChain's note of a callback that raised
    assert not [record for record in caplog.records if record.exc_info]


def assert_one_bad_path(result: dict, server: LoopbackServer, what: str) -> None:
    failed = [p for p in result["paths"] if p["error"]]
    assert len(result["paths"]) == 4 and len(failed) == 1, [p["error"] for p in result["paths"]]
    assert failed[0]["error"].startswith(
        f"explorer endpoint {server.base_url} (model 'explore') failed after 3 attempt(s): "
        "MalformedReplyError: "
    )
    assert what in failed[0]["error"]
    assert failed[0]["usage"]["output_tokens"] == 0
    assert [p["boxed"] for p in result["paths"] if not p["error"]] == ["42"] * 3
    assert result["boxed_answer"] == "42"  # the run went on with the 3 usable paths


@pytest.mark.parametrize("kind", WHAT_WAS_WRONG)
async def test_malformed_explorer_reply_fails_only_its_path(server, kind, caplog, capfd):
    server.inject_fault(model="explore", reply=kind, after=3)  # the 4th path, every attempt
    counts = Counts(server)
    with caplog.at_level(logging.DEBUG):
        result = await run(server)
    assert_one_bad_path(result, server, WHAT_WAS_WRONG[kind])
    assert counts("requests", "explore") == 3 + 3  # the bad path was tried max_attempts times
    assert counts("failed", "explore") == 3 and counts("completed", "synth") == 1
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2 and all("MalformedReplyError" in m for m in retries)
    assert_no_traceback(caplog, capfd)


@pytest.mark.parametrize("kind", STREAMED)
async def test_malformed_stream_fails_only_its_path(server, kind, caplog, capfd):
    server.inject_fault(model="explore", reply=kind, after=3)
    counts = Counts(server)
    with caplog.at_level(logging.DEBUG):
        result = await run(server, stream=True)
    assert_one_bad_path(result, server, STREAMED[kind])
    assert counts("requests", "explore") == 3 + 3
    assert_no_traceback(caplog, capfd)


async def test_a_malformed_reply_then_a_good_one_loses_nothing(server, caplog, capfd):
    server.inject_fault(model="explore", reply="empty-choices", count=1)
    counts = Counts(server)
    with caplog.at_level(logging.DEBUG):
        result = await run(server)
    assert [p["error"] for p in result["paths"]] == [None] * 4
    assert result["boxed_answer"] == "42"
    assert counts("requests", "explore") == 5 and counts("completed", "explore") == 4
    assert_no_traceback(caplog, capfd)


async def test_malformed_synthesizer_reply_fails_the_run_naming_the_endpoint(server, caplog, capfd):
    server.inject_fault(model="synth", reply="not-json")
    counts = Counts(server)
    with caplog.at_level(logging.DEBUG), pytest.raises(EndpointUnavailableError) as raised:
        await run(server)
    assert str(raised.value).startswith(
        f"synthesizer endpoint {server.base_url} (model 'synth') failed after 3 attempt(s): "
        "MalformedReplyError: the reply is not a JSON object: <html>"
    )
    assert counts("requests", "synth") == 3 and counts("completed", "explore") == 4
    assert_no_traceback(caplog, capfd)


async def test_a_whole_reply_without_usage_stops_the_run_at_once(server):
    """Decision: a server that never reports usage cannot be fixed by retrying, so a whole
    reply without it is ``MissingUsageError`` (not retried); a stream without it is retried."""
    server.inject_fault(model="explore", reply="no-usage")
    counts = Counts(server)
    with pytest.raises(MissingUsageError, match="carried no token usage"):
        await run(server, n=1)
    assert counts("requests", "explore") == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(server, status, caplog):
    server.inject_fault(model="explore", status=status, retry_after=1, count=1)
    counts = Counts(server)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="a2r_graph"):
        result = await run(server, n=1, retry_initial_wait_s=0.01, retry_max_wait_s=5)
    assert time.monotonic() - started >= 1.0  # the backoff alone would be ~0.02 s
    assert result["paths"][0]["error"] is None and result["boxed_answer"] == "42"
    assert counts("requests", "explore") == 2 and counts("failed", "explore") == 1
    assert f"Error code: {status}" in caplog.text and "retrying in 1.0 s" in caplog.text


async def test_retry_after_is_capped_by_retry_max_wait(server, caplog):
    server.inject_fault(model="explore", status=429, retry_after=3600, count=1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="a2r_graph"):
        result = await run(server, n=1, retry_initial_wait_s=0.01, retry_max_wait_s=0.5)
    assert result["boxed_answer"] == "42"
    assert 0.5 <= time.monotonic() - started < 10
    assert "retrying in 0.5 s" in caplog.text


def test_the_cli_reports_malformed_replies_without_a_traceback(server, tmp_path):
    env = stage_env(
        (server.base_url, "explore"),
        (server.base_url, "synth"),
        A2R_RETRY_INITIAL_WAIT_S="0.05",
        A2R_CHECKPOINT_DB=str(tmp_path / "threads.sqlite"),
    )
    server.inject_fault(model="explore", reply="empty-choices", after=3)
    done = a2r("ask", QUESTION, "--n", "4", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    paths = json.loads(done.stdout)["paths"]
    assert [bool(p["error"]) for p in paths].count(True) == 1

    server.clear_faults()
    server.inject_fault(model="synth", reply="invalid-json")
    failed = a2r("ask", "What is 2 + 2?", "--n", "2", env=env)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert (
        f"synthesizer endpoint {server.base_url} (model 'synth') failed after 2 attempt(s): "
        "MalformedReplyError: the reply is not valid JSON"
    ) in failed.stderr
    assert "a2r resume " in failed.stderr
