"""LangGraph Server's auth handler (a2r_graph.serving.server.authenticate), called as the
server does."""

from __future__ import annotations

import pytest
from langgraph_sdk import Auth

from a2r_graph.serving.server import authenticate


@pytest.fixture(autouse=True)
def no_server_settings(monkeypatch):
    monkeypatch.delenv("A2R_SERVER_API_KEY", raising=False)
    monkeypatch.delenv("A2R_SERVER_AUTH", raising=False)


async def test_the_servers_key_is_required(monkeypatch):
    monkeypatch.setenv("A2R_SERVER_API_KEY", "sk-right")
    assert (await authenticate({b"x-api-key": b"sk-right"}))["identity"]
    assert (await authenticate({b"authorization": b"Bearer sk-right"}))["identity"]
    for headers in ({}, {b"x-api-key": b"sk-wrong"}, {b"authorization": b"Basic sk-right"}):
        with pytest.raises(Auth.exceptions.HTTPException) as refused:
            await authenticate(headers)
        assert refused.value.status_code == 401
        assert "sk-right" not in str(refused.value.detail)


async def test_a_server_without_a_key_refuses_everything_unless_told_otherwise(monkeypatch):
    with pytest.raises(Auth.exceptions.HTTPException, match="A2R_SERVER_API_KEY"):
        await authenticate({b"x-api-key": b""})
    monkeypatch.setenv("A2R_SERVER_API_KEY", "")  # set but empty: still no key
    with pytest.raises(Auth.exceptions.HTTPException, match="A2R_SERVER_API_KEY"):
        await authenticate({b"x-api-key": b""})
    monkeypatch.setenv("A2R_SERVER_AUTH", "none")
    assert (await authenticate({}))["identity"] == "anonymous"
