"""The checks every HTTP door makes before a route (a2r_graph.serving.guard), on
``a2r serve``'s app over a scripted runner: what a web page, a DNS-rebinding page, a flood or
a caller who leaves meets.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from a2r_graph.serving.guard import MAX_JSON_DEPTH, CancelOnDisconnect, Guard, json_depth
from a2r_graph.serving.serve import build_app
from tests.fakes import PRESETS, ScriptedRunner, fake_deployment

LOCAL = "http://127.0.0.1:8100"
KEY = {"authorization": "Bearer sk-right"}
CHAT = {"model": "a2r", "messages": [{"role": "user", "content": "What is 2 + 3?"}]}


@pytest.fixture(autouse=True)
def deployment(monkeypatch):
    fake_deployment(monkeypatch).setenv("A2R_SERVER_API_KEY", "sk-right")
    return monkeypatch


def serve(runner: ScriptedRunner | None = None, base_url: str = LOCAL) -> TestClient:
    return TestClient(build_app(runner or ScriptedRunner(PRESETS)), base_url=base_url)


def test_with_auth_off_a_foreign_host_or_origin_starts_no_run(deployment):
    """Catches: DNS rebinding (any Host answered) and a web page's text/plain POST running
    the operator's models when A2R_SERVER_AUTH=none."""
    deployment.setenv("A2R_SERVER_AUTH", "none")
    runner = ScriptedRunner(PRESETS)
    with serve(runner, "http://evil.example:8100") as rebound:
        refused = rebound.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 403 and "A2R_SERVER_ALLOWED_HOSTS" in refused.text
    with serve(runner) as http:
        page = {"origin": "http://evil.example", "content-type": "text/plain"}
        refused = http.post("/v1/chat/completions", content=json.dumps(CHAT), headers=page)
        assert refused.status_code == 403 and "A2R_SERVER_ALLOWED_ORIGINS" in refused.text
        plain = http.post(
            "/v1/chat/completions", content=json.dumps(CHAT), headers={"content-type": "text/plain"}
        )
        assert plain.status_code == 415 and "application/json" in plain.text
        assert runner.runs == []
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        same_origin = http.post("/v1/chat/completions", json=CHAT, headers={"origin": LOCAL})
        assert same_origin.status_code == 200
        assert len(runner.runs) == 2
    deployment.setenv("A2R_SERVER_ALLOWED_HOSTS", "a2r.example")
    deployment.setenv("A2R_SERVER_ALLOWED_ORIGINS", "https://app.example")
    with serve(runner, "http://a2r.example") as named:
        allowed = named.post(
            "/v1/chat/completions", json=CHAT, headers={"origin": "https://app.example"}
        )
        assert allowed.status_code == 200


def test_a_foreign_origin_is_refused_even_with_the_key():
    with serve() as http:
        refused = http.get("/v1/models", headers={**KEY, "origin": "null"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in refused.headers


def test_bodies_over_the_limit_or_nested_too_deep_are_refused_not_parsed(deployment):
    """Catches: an unbounded body (memory) and a RecursionError 500 from deep JSON."""
    deployment.setenv("A2R_SERVER_MAX_BODY_BYTES", "4096")
    runner = ScriptedRunner(PRESETS)
    with serve(runner) as http:
        big = http.post("/v1/chat/completions", json={**CHAT, "user": "x" * 5000}, headers=KEY)
        assert big.status_code == 413 and "A2R_SERVER_MAX_BODY_BYTES" in big.text
    deployment.delenv("A2R_SERVER_MAX_BODY_BYTES")
    with serve(runner) as http:
        deep = "[" * 50_000 + "]" * 50_000
        for path in ("/v1/chat/completions", "/mcp"):
            refused = http.post(
                path, content=deep, headers={**KEY, "content-type": "application/json"}
            )
            assert refused.status_code == 400, path
            assert f"more than {MAX_JSON_DEPTH} levels" in refused.json()["error"]["message"]
        assert runner.runs == []


def test_json_depth_skips_brackets_inside_strings():
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert json_depth(b'["\\"[[["]') == 1
    assert json_depth(b"7") == 0


def test_development_only_routes_are_not_found_even_with_the_key():
    """Catches: langgraph dev's /internal/truncate (wipes every thread) and /deploy reachable
    through the project's middleware."""
    seen = []

    async def anything(request):
        seen.append(request.url.path)
        return JSONResponse({"wiped": True})

    paths = ["/internal/truncate", "/internal/debug/thread/1", "/deploy", "/ui/a2r"]
    app = Starlette(
        routes=[Route(path, anything, methods=["GET", "POST"]) for path in paths],
        middleware=[Middleware(Guard)],
    )
    with TestClient(app, base_url=LOCAL) as http:
        for path in paths:
            assert http.post(path, headers=KEY, json={}).status_code == 404, path
            assert http.get(path).status_code == 404, path
    assert seen == []


def test_the_servers_own_in_process_requests_pass(deployment):
    """langgraph-sdk's in-process client (root_path /noauth) carries no key."""

    async def ok(request):
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/threads", ok, methods=["POST"])], middleware=[Middleware(Guard)]
    )
    with TestClient(app, base_url=LOCAL) as outside:
        assert outside.post("/threads", json={}).status_code == 401
    with TestClient(app, base_url=LOCAL, root_path="/noauth") as inside:
        assert inside.post("/threads", json={}).status_code == 200


def test_strict_types_where_openai_answers_400():
    """Catches: "10" or true read as a token count, "4" as a path count, a seed beyond 64 bits
    forwarded to the model server, a non-list modalities as a 500."""
    runner = ScriptedRunner(PRESETS)
    with serve(runner) as http:
        for extra, param in (
            ({"max_tokens": "10"}, "max_tokens"),
            ({"max_tokens": True}, "max_tokens"),
            ({"a2r": {"n": "4"}}, "a2r"),
            ({"seed": 2**64}, "seed"),
            ({"modalities": 5}, "modalities"),
            ({"response_format": "json"}, "response_format"),
            ({"n": True}, "n"),
        ):
            refused = http.post("/v1/chat/completions", json={**CHAT, **extra}, headers=KEY)
            assert refused.status_code == 400, (extra, refused.text)
            assert refused.json()["error"]["param"] == param
        long_model = http.post(
            "/v1/chat/completions",
            json={**CHAT, "a2r": {"synthesizer": {"model": "m" * 300}}},
            headers=KEY,
        )
        assert long_model.status_code == 400 and "at most 256" in long_model.text
    assert runner.runs == []


def test_a_request_whose_caller_left_is_cancelled():
    """Catches: a non-streaming run that goes on paying for model calls after its caller
    disconnected."""
    events: list[str] = []
    started = asyncio.Event()

    async def endpoint(scope, receive, send):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        events.append("finished")

    async def main() -> None:
        messages = asyncio.Queue()
        await messages.put({"type": "http.request", "body": b"{}", "more_body": False})

        async def send(message):
            events.append(message["type"])

        task = asyncio.create_task(
            CancelOnDisconnect(endpoint)({"type": "http"}, messages.get, send)
        )
        await asyncio.wait_for(started.wait(), 5)
        await messages.put({"type": "http.disconnect"})
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert events == ["cancelled"]


def test_a_finished_request_is_answered_and_its_error_raised():
    async def answer(scope, receive, send):
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def fail(scope, receive, send):
        raise ValueError("boom")

    async def main() -> list:
        sent: list = []
        messages = asyncio.Queue()
        await messages.put({"type": "http.request", "body": b"hi", "more_body": False})
        await CancelOnDisconnect(answer)({"type": "http"}, messages.get, _append(sent))
        await messages.put({"type": "http.request", "body": b"", "more_body": False})
        with pytest.raises(ValueError, match="boom"):
            await CancelOnDisconnect(fail)({"type": "http"}, messages.get, _append(sent))
        return sent

    sent = asyncio.run(main())
    assert [message.get("body") for message in sent] == [None, b"hi"]


def _append(sent: list):
    async def send(message):
        sent.append(message)

    return send
