"""``a2r serve`` (a2r_graph.serving.serve): it needs the server's key unless told otherwise,
refuses to start without a usable configuration, and answers wrong keys with OpenAI's 401; and
the LangGraph Server configuration that serves the same routes."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from a2r_graph.serving.cli import _parser
from a2r_graph.serving.registry import BUILT_IN, strategy
from a2r_graph.serving.serve import DEFAULT_HOST, build_app, startup_problem
from tests.fakes import PRESETS, ScriptedRunner, fake_deployment

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def deployment(monkeypatch):
    return fake_deployment(monkeypatch)


def test_serve_binds_loopback_by_default():
    args = _parser().parse_args(["serve"])
    assert (args.command, args.host, args.no_mcp) == ("serve", DEFAULT_HOST, False)
    assert DEFAULT_HOST == "127.0.0.1"


def test_serve_will_not_start_without_a_key_or_a_model(deployment, capsys):
    assert "set A2R_SERVER_API_KEY" in startup_problem("127.0.0.1")
    deployment.setenv("A2R_SERVER_API_KEY", "sk-right")
    assert startup_problem("127.0.0.1") is None
    deployment.delenv("A2R_EXPLORER__MODEL")
    assert "context.explorer: required" in startup_problem("127.0.0.1")
    deployment.setenv("A2R_EXPLORER__MODEL", "m")
    deployment.delenv("A2R_SERVER_API_KEY")
    deployment.setenv("A2R_SERVER_AUTH", "none")
    assert startup_problem("0.0.0.0") is None
    assert "anyone who reaches this port" in capsys.readouterr().err


def test_every_route_but_ok_needs_the_key(deployment):
    deployment.setenv("A2R_SERVER_API_KEY", "sk-right")
    with TestClient(build_app(ScriptedRunner(PRESETS))) as http:
        assert http.get("/ok").status_code == 200
        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}):
            for method, path in (
                ("GET", "/v1/models"),
                ("POST", "/v1/chat/completions"),
                ("POST", "/mcp"),
            ):
                refused = http.request(method, path, headers=headers, json={})
                assert refused.status_code == 401, (path, headers)
                error = refused.json()["error"]
                assert error["code"] == "invalid_api_key" and "Bearer" in error["message"]
                assert "sk-right" not in refused.text
        for headers in ({"authorization": "Bearer sk-right"}, {"x-api-key": "sk-right"}):
            assert http.get("/v1/models", headers=headers).json()["data"][0]["id"] == "a2r"


def test_auth_none_serves_without_a_key(deployment):
    deployment.setenv("A2R_SERVER_AUTH", "none")
    app = build_app(ScriptedRunner(PRESETS), mcp=False)
    with TestClient(app, base_url="http://127.0.0.1:8100") as http:
        assert http.get("/v1/models").status_code == 200
        assert http.post("/mcp", json={}).status_code == 404


@pytest.mark.parametrize("config_file", ["langgraph.json", "langgraph.postgres.json"])
def test_langgraph_server_serves_every_built_in_strategy_for_untrusted_runs(config_file):
    """Catches: a strategy the doors list that LangGraph Server lacks (its model and tool
    answer 404), a graph id no door knows (its runs go unchecked), or a served graph that takes
    the whole configuration as its context (a caller could choose the endpoints)."""
    graphs = json.loads((ROOT / config_file).read_text())["graphs"]
    assert list(graphs) == [strategy.name for strategy in BUILT_IN]
    for name, path in graphs.items():
        module, _, attribute = path.partition(":")
        graph = getattr(importlib.import_module(module), attribute)
        assert graph.context_schema is strategy(name).options


def test_langgraph_server_serves_the_same_routes_behind_its_auth():
    config = json.loads((ROOT / "langgraph.json").read_text())
    http = config["http"]
    assert http["enable_custom_route_auth"] is True  # /v1 and /mcp need the server's key
    assert http["disable_mcp"] is True  # /mcp is a2r_graph.serving.mcp_tool, not the generic one
    from a2r_graph.serving.webapp import app

    paths = {route.path for route in app.routes}
    assert {"/v1/chat/completions", "/v1/models", "/mcp"} <= paths
