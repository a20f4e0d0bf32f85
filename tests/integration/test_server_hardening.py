"""The second hardening pass (issue #31), as a hostile or careless caller meets a real
``langgraph dev`` and a real ``a2r serve`` over the loopback model server: development-only
routes, the key on every route, web pages and DNS rebinding, bodies that grow memory or nest
deep, cron patches, strict types, and callers who leave before their answer.

The model server answers every call after ``LATENCY_S``: a run takes two rounds of it (explorers,
then the synthesizer), so a run its caller left early shows, in the model server's own request
counts, whether the synthesizer was still paid for.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.a2r_serve import loopback_env
from tests.integration.conftest import A2R, AUTH, free_port, langgraph_dev, server_process
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
LATENCY_S = 1.5
QUESTION = "What is 2 + 3?"
CHAT = {"model": "a2r", "messages": [{"role": "user", "content": QUESTION}]}
MCP_HEADERS = {"accept": "application/json, text/event-stream"}
EVIL = "http://evil.example"
JSON = {"content-type": "application/json"}


def _rpc(method: str, params: dict) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict]:
    logs = tmp_path_factory.mktemp("hardening")
    with LoopbackServer(models=("explore", "synth"), latency_ms=LATENCY_S * 1000) as loop:
        env = loopback_env(loop)
        open_port = free_port()
        command = [A2R, "serve", "--port", str(open_port)]
        open_env = {**env, "A2R_SERVER_AUTH": "none"}
        with (
            langgraph_dev(env, logs / "langgraph-dev.log") as (langgraph_url, _),
            server_process(command, open_env, logs / "a2r-serve.log", open_port) as (open_url, _),
        ):
            yield {"langgraph": langgraph_url, "open": open_url, "loop": loop, "logs": logs}


@pytest.fixture
def lg(servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers["langgraph"], headers=AUTH, timeout=60) as client:
        yield client


def test_development_only_routes_cannot_wipe_or_read_the_servers_data(servers, lg):
    """Catches: langgraph dev's /internal/truncate wiping every thread for any web page, and
    /internal/debug/thread/{id} giving a thread's state without the key."""
    thread = lg.post("/threads", json={"metadata": {"question": QUESTION}}).json()["thread_id"]
    page = {"origin": EVIL, "content-type": "text/plain"}
    with httpx.Client(base_url=servers["langgraph"], timeout=30) as stranger:
        wipe = stranger.post("/internal/truncate", content=b"x", headers=page)
        assert wipe.status_code in (403, 404), wipe.text
        assert wipe.headers.get("access-control-allow-origin") != "*"
        debug = stranger.get(f"/internal/debug/thread/{thread}")
        assert debug.status_code == 404 and QUESTION not in debug.text
        for method in ("GET", "POST"):
            assert stranger.request(method, "/deploy", json={}).status_code == 404
    # not even the key opens them: a deployment never needs them
    assert lg.post("/internal/truncate", json={}).status_code == 404
    assert lg.get(f"/internal/debug/thread/{thread}").status_code == 404
    ui = lg.get("/ui/a2r")
    assert ui.status_code == 404, ui.text
    assert lg.get(f"/threads/{thread}").status_code == 200  # nothing was wiped
    assert "Traceback" not in (servers["logs"] / "langgraph-dev.log").read_text()


@pytest.mark.parametrize("path", ["/info", "/docs", "/openapi.json", "/metrics", "/threads/search"])
def test_every_route_but_the_health_check_needs_the_key(servers, lg, path):
    """Catches: the info routes (and LangGraph Studio's auth scheme, a no-op in dev) letting
    a caller without the key in."""
    method = "POST" if path.endswith("search") else "GET"
    with httpx.Client(base_url=servers["langgraph"], timeout=30) as stranger:
        assert stranger.get("/ok").status_code == 200
        for headers in ({}, {"x-auth-scheme": "langsmith"}, {"x-api-key": "wrong"}):
            refused = stranger.request(method, path, headers=headers, json={})
            assert refused.status_code == 401, (path, headers, refused.text[:200])
    assert lg.request(method, path, json={}).status_code == 200


def test_a_web_page_cannot_call_the_server(servers, lg):
    """Catches: CORS answered with ``*`` and foreign origins admitted."""
    preflight = lg.options(
        "/threads",
        headers={"origin": EVIL, "access-control-request-method": "POST"},
    )
    assert preflight.headers.get("access-control-allow-origin") not in ("*", EVIL)
    refused = lg.post("/threads", json={}, headers={"origin": EVIL})
    assert refused.status_code == 403 and "A2R_SERVER_ALLOWED_ORIGINS" in refused.text


@pytest.mark.parametrize("path", ["/runs/wait", "/v1/chat/completions", "/mcp"])
def test_deeply_nested_json_is_a_400_not_a_500(lg, path):
    deep = "[" * 50_000 + "]" * 50_000
    answer = lg.post(
        path, content=deep, headers={"content-type": "application/json", **MCP_HEADERS}
    )
    assert answer.status_code == 400, answer.text[:300]
    assert "Traceback" not in answer.text


def test_a_cron_patch_is_validated_like_the_run_it_starts(lg):
    """Catches: PATCH /runs/crons/{id} storing a foreign endpoint, a server secret's variable
    name or a blank question, to fail only when the cron fires."""
    cron = lg.post(
        "/runs/crons",
        json={"assistant_id": "a2r", "input": {"question": QUESTION}, "schedule": "0 0 1 1 *"},
    ).json()
    path = f"/runs/crons/{cron['cron_id']}"
    for patch, message in (
        ({"context": {"synthesizer": {"api_key_env": "DB_PASSWORD"}}}, "synthesizer.api_key_env"),
        ({"context": {"explorer": {"base_url": f"{EVIL}/v1"}}}, "not an endpoint this server"),
        ({"input": {"question": "  "}}, "input.question"),
        ({"context": {"n": "4"}}, "context.n"),
    ):
        refused = lg.patch(path, json=patch)
        assert refused.status_code == 422, (patch, refused.text)
        assert message in refused.json()["detail"]
    assert lg.patch(path, json={"context": {"n": 3}}).status_code == 200
    stored = lg.get(path).json()["payload"]
    assert stored["input"] == {"question": QUESTION} and stored["context"] == {"n": 3}


def test_with_auth_off_a_browser_style_request_starts_no_run(servers):
    """Catches: a web page's text/plain POST (no CORS preflight) or a DNS-rebinding page
    running the operator's models on a server started with A2R_SERVER_AUTH=none."""
    loop: LoopbackServer = servers["loop"]
    before = loop.stats()["requests"]
    body = json.dumps(CHAT).encode()
    port = servers["open"].rsplit(":", 1)[1]
    with httpx.Client(base_url=servers["open"], timeout=30) as page:
        for headers in (
            {"content-type": "text/plain", "origin": EVIL},
            {"content-type": "text/plain", "host": f"evil.example:{port}"},
            {"content-type": "application/json", "host": f"rebound.example:{port}"},
            {"content-type": "text/plain"},
        ):
            for path in ("/v1/chat/completions", "/mcp"):
                refused = page.post(path, content=body, headers=headers)
                assert refused.status_code in (403, 415), (path, headers, refused.text)
                assert "access-control-allow-origin" not in refused.headers
    assert loop.stats()["requests"] == before  # no model call


def _synthesizer_calls_after_leaving(loop: LoopbackServer, url: str, path: str, body: dict) -> int:
    """POST ``body`` to ``url`` + ``path`` on a raw connection, close it once the run's
    explorers reached the model server, wait until their replies were due (a synthesis would
    have begun), and count the synthesizer requests the abandoned run made."""
    before = loop.stats()["requests"]
    host = urlsplit(url).netloc
    payload = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"host: {host}", f"content-length: {len(payload)}"]
    head += [f"{k}: {v}" for k, v in {**AUTH, **MCP_HEADERS, **JSON}.items()]
    with socket.create_connection(tuple(host.split(":")), timeout=30) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        deadline = time.monotonic() + 30
        while loop.stats()["requests"].get("explore", 0) < before.get("explore", 0) + 2:
            assert time.monotonic() < deadline, "the explorers never reached the model server"
            time.sleep(0.05)
    time.sleep(LATENCY_S + 3)
    return loop.stats()["requests"].get("synth", 0) - before.get("synth", 0)


@pytest.mark.parametrize("door", ["openai", "mcp"])
@pytest.mark.parametrize("server", ["langgraph", "open"])
def test_a_request_whose_caller_left_stops_its_run(servers, door, server):
    """Catches: a non-streaming chat completion or MCP tool call that keeps paying for the
    synthesizer after its caller disconnected (and a client's retries running it again)."""
    if door == "openai":
        path, body = "/v1/chat/completions", CHAT
    else:
        path, body = (
            "/mcp",
            _rpc("tools/call", {"name": "a2r", "arguments": {"question": QUESTION}}),
        )
    assert _synthesizer_calls_after_leaving(servers["loop"], servers[server], path, body) == 0


def test_a_flood_of_huge_model_names_does_not_grow_the_server(servers, tmp_path: Path):
    """Catches: caller-chosen model names kept by the server's caches (80 requests with 1 MB
    names grew ``a2r serve`` by 229 MB; three with 20 MB names by 800 MB, never released)."""
    port = free_port()
    env = loopback_env(servers["loop"])
    command = [A2R, "serve", "--port", str(port)]
    with (
        server_process(command, env, tmp_path / "serve.log", port) as (url, process),
        httpx.Client(base_url=url, headers=AUTH, timeout=60) as http,
    ):
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        before = _rss_mb(process.pid)
        for i in range(80):
            name = f"{i}" + "m" * 1_000_000
            for body in (
                {**CHAT, "model": f"a2r:synthesizer.model={name}"},
                {**CHAT, "a2r": {"synthesizer": {"model": name}}},
            ):
                assert http.post("/v1/chat/completions", json=body).status_code in (400, 413)
        for i in range(3):
            huge = {**CHAT, "a2r": {"synthesizer": {"model": f"{i}" + "m" * 20_000_000}}}
            assert http.post("/v1/chat/completions", json=huge).status_code == 413
        grown = _rss_mb(process.pid) - before
    assert grown < 64, f"a2r serve grew by {grown:.0f} MB"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")
