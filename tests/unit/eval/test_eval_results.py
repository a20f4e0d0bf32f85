"""``results.jsonl``'s one reader: the committed evidence loads and reports as committed; a torn
or foreign line is refused with its file and line number."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from a2r_graph.eval.results import RESULTS_FILE, SUMMARY_FILE, ResultsError, read_results
from a2r_graph.serving.cli import main
from tests.eval_fakes import needs
from tests.result_lines import result_line

COMMITTED = sorted(Path(__file__).parents[3].glob("docs/results/*/results.jsonl.gz"))
BEFORE_OUTCOMES = {"policies-heldout"}
"""Committed before the report's synthesis-outcomes block (eval/outcomes.py, 11e3705)."""


def unpacked(packed: Path, out: Path) -> Path:
    out.mkdir()
    (out / RESULTS_FILE).write_bytes(gzip.decompress(packed.read_bytes()))
    return out / RESULTS_FILE


def test_results_are_committed():
    assert len(COMMITTED) >= 4


@pytest.mark.parametrize("packed", COMMITTED, ids=lambda path: path.parent.name)
def test_every_committed_results_file_loads(tmp_path, packed):
    results = unpacked(packed, tmp_path / "out")
    lines = read_results(results, failed=True)
    assert len(lines) == len(results.read_text(encoding="utf-8").splitlines())
    assert all(line.finished and line.paths and line.by_n for line in lines)


@pytest.mark.parametrize("packed", COMMITTED, ids=lambda path: path.parent.name)
def test_the_report_over_a_committed_run_is_its_committed_table(tmp_path, packed, capsys):
    needs("math_verify", "matplotlib", "reasoning_gym", "tqdm")
    committed = packed.parent
    out = unpacked(packed, tmp_path / "out").parent
    if (committed / "wall.json").is_file():
        shutil.copy(committed / "wall.json", out)
    summary = json.loads((committed / SUMMARY_FILE).read_text(encoding="utf-8"))
    explorer, synthesizer = summary["model"].split(" -> ")
    lines = read_results(out / RESULTS_FILE)
    generators = summary["benchmark"].removeprefix("builtin:").split(",")
    [seed] = {line.id.split("-")[-2] for line in lines}  # builtin ids: NAME-SEED-INDEX
    [k] = {line.k for line in lines}
    command = ["eval", summary["benchmark"], "--report", "--out", str(out), "--db", ":memory:"]
    command += ["--explorer-model", explorer, "--synthesizer-model", synthesizer]
    command += ["--n", str(k), "--ns", *summary["by_n"], "--data-seed", seed]
    assert main([*command, "--size", str(len(lines) // len(generators))]) == 0
    printed = capsys.readouterr().out
    recommendation = json.loads((out / SUMMARY_FILE).read_text())["recommendation"]
    assert recommendation["chosen"]["key"] in recommendation["front"]  # cheap: on the front
    assert "Recommended for cheap (chosen on this eval's own data" in printed
    table = (out / "table.md").read_text(encoding="utf-8")
    expected = (committed / "table.md").read_text(encoding="utf-8")
    if committed.name in BEFORE_OUTCOMES:  # the report has since gained its last block
        table = table[: table.index("\n\n| The synthesizer at N=")] + "\n"
    assert table == expected


def test_a_torn_last_line_is_skipped_but_a_torn_or_foreign_line_before_it_refused(tmp_path):
    results = tmp_path / RESULTS_FILE
    good = result_line().model_dump_json()
    results.write_text(f'{good}\n{{"key": "b#0", "torn')  # a crash mid-write
    assert [line.key for line in read_results(results)] == ["a#0"]
    results.write_text(f'{good}\n{{"key": "b#0", "torn\n{good}\n')
    with pytest.raises(ResultsError, match=r"results.jsonl, line 2 is not JSON .* delete"):
        read_results(results)
    results.write_text(f"{good}\n\n" + json.dumps({"key": "b#0", "score": 1}) + "\n")
    with pytest.raises(ResultsError) as refused:
        read_results(results)
    assert f"{results}, line 3 is not a line of a2r eval's results (id: Field required;" in str(
        refused.value
    )
    assert "more): name the results.jsonl of an a2r eval of this version" in str(refused.value)
