"""``a2r compare`` (a2r_graph.eval.compare): an A2R eval and another strategy's eval of the
same problems in one table, with the routing figures; evals of other problems refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a2r_graph.eval.compare import compare, table

A2R_SUMMARY = {
    "model": "small -> big",
    "queries": 10,
    "pass_at_1": 20.0,
    "pass_at_1_cost_per_query": 0.001,
    "pass_at_1_tokens_per_query": 300,
    "by_n": {
        "4": {
            "a2r": 30.0,
            "a2r_cost_per_query": 0.01,
            "a2r_tokens_per_query": 2000,
            "cons_at_n": 25.0,
            "cons_cost_per_query": 0.004,
            "cons_tokens_per_query": 1200,
        }
    },
    "alone": {"pass_at_1": 40.0, "cost_per_query": 0.003, "tokens_per_query": 400},
}
R2R_SUMMARY = {
    "benchmark": "dev",
    "graph": "r2r",
    "queries": 10,
    "pass_at_1": 35.0,
    "cost_per_query": 0.002,
    "tokens_per_query": 700,
    "wall_s_per_query": 12.5,
    "metrics": {"tokens.slm": 270.0, "tokens.llm": 30.0, "switches": 30.0},
}


def eval_dir(root: Path, name: str, summary: dict) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps(summary))
    return directory


def test_one_table_holds_every_configuration_with_the_llms_share(tmp_path):
    """Catches: an A2R eval reduced to one row, R2R's LLM share computed over the wrong
    tokens (it is the LLM's share of the answer's tokens), or a row that loses its eval."""
    rows = compare(
        [eval_dir(tmp_path, "a2r-eval", A2R_SUMMARY), eval_dir(tmp_path, "r2r-0.5", R2R_SUMMARY)]
    )
    names = [row.name for row in rows]
    assert names == ["small Pass@1", "A2R@4", "Cons@4", "big alone Pass@1", "r2r"]
    r2r = rows[-1]
    assert (r2r.accuracy, r2r.llm_share, r2r.switches, r2r.source) == (35.0, 0.1, 30.0, "r2r-0.5")
    text = table(rows)
    assert "| r2r | r2r-0.5 | 10 | 35.0 | 0.0020000 | 700 | 10.0% | 30.0 | 12.5 |" in text
    assert "| A2R@4 | a2r-eval | 10 | 30.0 | 0.0100000 | 2000 | - | - | - |" in text


def test_evals_of_different_problem_counts_or_foreign_files_are_refused(tmp_path):
    """Catches: accuracies of 10 and 100 problems set side by side as if comparable, and a
    directory that is no eval read as empty rows."""
    short = eval_dir(tmp_path, "short", {**R2R_SUMMARY, "queries": 3})
    with pytest.raises(ValueError, match="different numbers of problems"):
        compare([eval_dir(tmp_path, "a2r-eval", A2R_SUMMARY), short])
    with pytest.raises(ValueError, match="not the results.json of an a2r eval"):
        compare([eval_dir(tmp_path, "foreign", {"queries": 10})])
    with pytest.raises(ValueError, match="not readable"):
        compare([tmp_path / "missing"])
