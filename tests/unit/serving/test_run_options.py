"""What an untrusted run may set (``RunOptions``) over the deployment's ``A2R_*`` context, and
the rule that a key only goes to the endpoint it was configured with."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from a2r_graph.context import A2RContext, redact_url
from a2r_graph.errors import ConfigurationError
from a2r_graph.graph import build_graph
from a2r_graph.serving.run_options import RunOptions, run_context
from tests.fakes import scripted

OPERATOR = "http://models.internal:8000/v1"


@pytest.fixture
def deployment(monkeypatch):
    """The server's environment: both stages on the operator's endpoint, with a key."""
    for name in list(os.environ):
        if name.startswith("A2R_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SERVER_KEY", "sk-operator")
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    for stage in ("EXPLORER", "SYNTHESIZER"):
        monkeypatch.setenv(f"A2R_{stage}__BASE_URL", OPERATOR)
        monkeypatch.setenv(f"A2R_{stage}__MODEL", f"{stage.lower()}-model")
        monkeypatch.setenv(f"A2R_{stage}__API_KEY_ENV", "SERVER_KEY")
    return monkeypatch


def test_a_run_may_choose_how_to_sample(deployment):
    context = run_context({"n": 2, "explorer": {"temperature": 0.1, "model": "other"}})
    assert context.n == 2
    assert context.explorer.temperature == 0.1 and context.explorer.model == "other"
    assert context.explorer.url == OPERATOR and context.explorer.api_key_env == "SERVER_KEY"
    assert context.synthesizer.model == "synthesizer-model"


def test_a_run_may_choose_its_policies(deployment):
    policies = {
        "confidence": {"top_logprobs": 3},
        "shortcut": True,
        "agreement": {"min_share": 0.75},
        "waves": [2],
        "top_references": 2,
        "budget": {"max_output_tokens": 900},
    }
    context = run_context(policies)
    assert context.confidence.top_logprobs == 3 and context.shortcut
    assert context.agreement.min_share == 0.75 and context.waves == (2,)
    assert context.top_references == 2 and context.budget.max_output_tokens == 900
    assert context.explorer.url == OPERATOR  # the deployment's endpoints stay


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budget": {"max_cost": "x"}, "waves": [1]}, "context.budget.max_cost: Input should be"),
        ({"agreement": {"quorum": 3}}, "context.agreement.quorum: unknown field"),
        ({"confidence": {"top_logprobs": 50}}, "context.confidence.top_logprobs: Input should be"),
        ({"explorer": {"api_key_env": "DB_PASSWORD"}}, "context.explorer.api_key_env: set by"),
        ({"synthesizer": {"extra_body": {"n": 64}}}, "context.synthesizer.extra_body: set by"),
        ({"explorer": {"input_price_per_mtok": 0}}, "(A2R_EXPLORER__INPUT_PRICE_PER_MTOK)"),
        ({"prompts_dir": "/etc"}, "context.prompts_dir: set by the server's deployment"),
        ({"request_timeout_s": 1e9}, "context.request_timeout_s: set by"),
        ({"explorer": {"url": "x"}}, "context.explorer.url: unknown field; a run may set model"),
        ({"nn": 3}, "context.nn: unknown field"),
        ({"n": 0}, "context.n: Input should be greater than or equal to 1 (got 0)"),
        ({"n": 2, "min_paths": 3}, "context: min_paths (3) must be <= n (2)"),
        (
            {"explorer": {"base_url": "http://attacker:9/v1", "model": "x"}},
            "context.explorer.base_url: http://attacker:9/v1 is not an endpoint this server allows",
        ),
    ],
)
def test_a_run_cannot_choose_endpoints_keys_or_deployment_fields(deployment, options, message):
    with pytest.raises(ConfigurationError) as refused:
        run_context(options)
    assert message in str(refused.value)
    assert OPERATOR not in str(refused.value)  # the deployment's values are not echoed


def test_allowed_endpoints_get_no_key(deployment):
    deployment.setenv("A2R_SERVER_ALLOWED_BASE_URLS", "http://gpu-b:8000/v1, http://gpu-c:8000/v1")
    context = run_context({"explorer": {"base_url": "http://gpu-c:8000/v1/", "model": "m"}})
    assert context.explorer.url == "http://gpu-c:8000/v1"
    assert context.explorer.api_key_env is None  # the operator's key stays with its endpoint
    assert context.synthesizer.api_key_env == "SERVER_KEY"
    # The configured endpoint itself, however spelt, keeps its key.
    same = run_context({"explorer": {"base_url": OPERATOR + "/"}})
    assert same.explorer.api_key_env == "SERVER_KEY"


def test_a_python_caller_pointing_elsewhere_does_not_inherit_the_environments_key(deployment):
    moved = A2RContext(explorer={"base_url": "http://elsewhere:1/v1", "model": "m"})
    assert moved.explorer.api_key_env is None
    kept = A2RContext(explorer={"model": "m"})
    assert kept.explorer.api_key_env == "SERVER_KEY"
    explicit = A2RContext(explorer={"base_url": "http://elsewhere:1/v1", "api_key_env": "K"})
    assert explicit.explorer.api_key_env == "K"


def test_misspelt_fields_are_refused_not_dropped(deployment):
    with pytest.raises(ValidationError, match="min_path\n  Extra inputs are not permitted"):
        A2RContext(min_path=3)


def test_credentials_in_urls_are_redacted_for_display():
    assert redact_url("http://user:pw@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("http://host:8000/v1") == "http://host:8000/v1"


async def test_the_served_graph_refuses_before_any_call(deployment):
    """The guard is in the graph, not only in the HTTP middleware: a route that skips the
    middleware still cannot send a request, or the key, anywhere else."""
    model = scripted()
    graph = build_graph(chat_model=lambda stage, timeout_s: model, context_schema=RunOptions)
    hostile = {"explorer": {"base_url": "http://attacker:9/v1", "model": "x"}}
    with pytest.raises(ConfigurationError, match="not an endpoint this server allows"):
        await graph.ainvoke({"question": "What is 2 + 3?"}, context=hostile)
    with pytest.raises(ValidationError, match="api_key_env"):
        await graph.ainvoke(
            {"question": "What is 2 + 3?"}, context={"explorer": {"api_key_env": "DB_PASSWORD"}}
        )
    assert model.calls == []
