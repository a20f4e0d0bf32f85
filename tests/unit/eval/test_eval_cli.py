"""Bad numbers on the command line are refused by name before anything runs (exit 2)."""

import pytest

from a2r_graph.serving.cli import main

EVAL = ["eval", "no-such-file.jsonl"]  # were a value let through, this would say so instead


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [*EVAL, "--concurrency", "0"],
            "argument --concurrency: must be a positive integer, got 0",
        ),
        ([*EVAL, "--size", "-1"], "argument --size: must be a positive integer, got -1"),
        ([*EVAL, "--runs", "0"], "argument --runs: must be a positive integer, got 0"),
        ([*EVAL, "--ns", "1", "0"], "argument --ns: must be a positive integer, got 0"),
        ([*EVAL, "--runs", "two"], "argument --runs: must be a positive integer, got 'two'"),
        (
            ["ask", "q", "--run-timeout", "0"],
            "argument --run-timeout: must be a positive finite number, got 0",
        ),
        (
            ["ask", "q", "--run-timeout", "-5"],
            "argument --run-timeout: must be a positive finite number, got -5",
        ),
        (
            ["ask", "q", "--run-timeout", "nan"],
            "argument --run-timeout: must be a positive finite number, got nan",
        ),
        (
            ["ask", "q", "--timeout", "inf"],
            "argument --timeout: Input should be less than or equal to 86400, got inf "
            "[> 0, ≤ 86400; env A2R_REQUEST_TIMEOUT_S]",
        ),
        ([*EVAL, "--json"], "unrecognized arguments: --json"),  # a run's options, not eval's
        (
            [*EVAL, "--explorer-input-price", "inf"],
            "argument --explorer-input-price: Input should be a finite number, got inf "
            "[≥ 0; env A2R_EXPLORER__INPUT_PRICE_PER_MTOK]",
        ),
        (
            ["ask", "q", "--synthesizer-output-price", "-1"],
            "argument --synthesizer-output-price: Input should be greater than or equal to 0, "
            "got -1 [≥ 0; env A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK]",
        ),
    ],
)
def test_bad_numbers_are_refused_by_argparse(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_price_that_is_not_finite_in_the_environment_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("A2R_EXPLORER__MODEL", "e")
    monkeypatch.setenv("A2R_SYNTHESIZER__MODEL", "s")
    monkeypatch.setenv("A2R_EXPLORER__INPUT_PRICE_PER_MTOK", "inf")  # cost: inf, JSON: Infinity
    assert main(EVAL) == 2
    error = capsys.readouterr().err
    assert "explorer.input_price_per_mtok: Input should be a finite number" in error
    assert "no such data file" not in error
