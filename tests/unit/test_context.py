import subprocess
import sys

import pytest
from pydantic import ValidationError

from a2r_graph.context import A2RContext
from a2r_graph.errors import describe_validation_error
from a2r_graph.serving.cli import _parser, context_from_args

BOTH = {"explorer": {"model": "e"}, "synthesizer": {"model": "s"}}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("A2R_") and name != "A2R_CACHE_DIR":
            monkeypatch.delenv(name)


def errors_of(**fields):
    with pytest.raises(ValidationError) as caught:
        A2RContext(**fields)
    return {".".join(map(str, e["loc"])): e for e in caught.value.errors()}


def test_defaults():
    context = A2RContext(**BOTH)
    assert (context.n, context.min_paths) == (4, 1)
    assert context.explorer.url == "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize(
    ("fields", "field", "kind"),
    [
        ({"n": 0}, "n", "greater_than_equal"),
        ({"n": 65}, "n", "less_than_equal"),
        ({"request_timeout_s": 0}, "request_timeout_s", "greater_than"),
        ({"max_attempts": 0}, "max_attempts", "greater_than_equal"),
        ({"explorer": {"model": "e", "temperature": 3}}, "explorer.temperature", "less_than_equal"),
        ({"explorer": {"model": "e", "top_p": 0}}, "explorer.top_p", "greater_than"),
        (
            {"synthesizer": {"model": "s", "max_tokens": 0}},
            "synthesizer.max_tokens",
            "greater_than_equal",
        ),
        ({"explorer": {"model": "e", "base_url": "not a url"}}, "explorer.base_url", "url_parsing"),
        ({"explorer": {"model": ""}}, "explorer.model", "string_too_short"),
        ({"explorer": {"model": "e", "tempreature": 1}}, "explorer.tempreature", "extra_forbidden"),
        (
            {"synthesizer": {"model": "s", "output_price_per_mtok": -1}},
            "synthesizer.output_price_per_mtok",
            "greater_than_equal",
        ),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_range(fields, field, kind):
    errors = errors_of(**{**BOTH, **fields})
    assert errors[field]["type"] == kind


def test_min_paths_above_n_is_rejected():
    with pytest.raises(ValidationError, match=r"min_paths \(5\) must be <= n \(4\)"):
        A2RContext(**BOTH, min_paths=5)


def test_environment_supplies_defaults_and_explicit_values_win(monkeypatch):
    monkeypatch.setenv("A2R_N", "7")
    monkeypatch.setenv("A2R_EXPLORER__BASE_URL", "http://gpu-a:8000/v1")
    monkeypatch.setenv("A2R_EXPLORER__MODEL", "Qwen/Qwen3-4B")
    monkeypatch.setenv("A2R_SYNTHESIZER__MODEL", "Qwen/Qwen3-8B")
    context = A2RContext(explorer={"temperature": 0.2})
    assert context.n == 7
    assert context.explorer.url == "http://gpu-a:8000/v1"  # env kept, merged with the override
    assert (context.explorer.model, context.explorer.temperature) == ("Qwen/Qwen3-4B", 0.2)
    assert A2RContext(n=2).n == 2


def test_bad_environment_value_is_reported_with_its_variable(monkeypatch):
    monkeypatch.setenv("A2R_N", "many")
    with pytest.raises(ValidationError) as caught:
        A2RContext(**BOTH)
    message = describe_validation_error(caught.value)
    assert "n: Input should be a valid integer" in message
    assert "env A2R_N" in message


def test_missing_model_names_the_variable_to_set():
    args = _parser().parse_args(["ask", "q", "--explorer-model", "e"])
    with pytest.raises(ValidationError) as caught:
        context_from_args(args)
    assert "synthesizer.model: required: set A2R_SYNTHESIZER__MODEL" in describe_validation_error(
        caught.value
    )


def test_cli_flags_fill_both_stages():
    args = _parser().parse_args(
        [
            "ask",
            "q",
            "--explorer-model",
            "e",
            "--synthesizer-model",
            "s",
            "--n",
            "3",
            "--max-tokens",
            "64",
            "--seed",
            "5",
            "--synthesizer-url",
            "http://h:9/v1",
        ]
    )
    context = context_from_args(args)
    assert context.n == 3
    assert (context.explorer.max_tokens, context.synthesizer.max_tokens) == (64, 64)
    assert (context.explorer.seed, context.synthesizer.seed) == (5, 5)
    assert context.synthesizer.url == "http://h:9/v1"


def test_cli_reports_bad_configuration_without_calling_a_server():
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "a2r_graph.serving.cli",
            "ask",
            "q",
            "--n",
            "0",
            "--explorer-model",
            "e",
            "--synthesizer-model",
            "s",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 2
    assert (
        "argument --n: Input should be greater than or equal to 1, got 0 [≥ 1, ≤ 64; env A2R_N]"
        in shown.stderr
    )


def test_cli_price_flags_set_each_stage():
    args = _parser().parse_args(
        ["ask", "q", "--explorer-model", "e", "--synthesizer-model", "s",
         "--explorer-input-price", "0.05", "--synthesizer-output-price", "0.4"]
    )  # fmt: skip
    context = context_from_args(args)
    assert context.explorer.input_price_per_mtok == 0.05
    assert context.synthesizer.output_price_per_mtok == 0.4
    assert context.explorer.output_price_per_mtok == 0.0


def test_prompts_dir_must_exist_and_each_of_its_prompts_load(tmp_path):
    missing = errors_of(**BOTH, prompts_dir=tmp_path / "missing")["prompts_dir"]
    assert "does not exist" in missing["msg"]
    (tmp_path / "synthesizer.txt").write_text("Question: {question}")
    broken = errors_of(**BOTH, prompts_dir=tmp_path)["prompts_dir"]
    assert "synthesizer.txt lacks the placeholder(s) {references}" in broken["msg"]
    (tmp_path / "synthesizer.txt").write_text("Question: {question}\n{references}")
    assert A2RContext(**BOTH, prompts_dir=tmp_path).prompts_dir == tmp_path


def test_prompts_dir_from_the_environment_is_checked_too(monkeypatch, tmp_path):
    monkeypatch.setenv("A2R_PROMPTS_DIR", str(tmp_path / "missing"))
    with pytest.raises(ValidationError) as caught:
        A2RContext(**BOTH)
    assert "env A2R_PROMPTS_DIR" in describe_validation_error(caught.value)
