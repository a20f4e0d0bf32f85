"""``a2r eval`` on 10 offline problems against the real vLLM server: table, JSON, plot."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from a2r_graph.eval.results import read_results
from tests.integration.conftest import a2r

pytestmark = pytest.mark.integration


def test_eval_on_ten_builtin_problems_writes_the_table_json_and_plot_and_is_reused(
    vllm_server, tmp_path
):
    env = {
        **os.environ,
        "A2R_EXPLORER__BASE_URL": vllm_server.base_url,
        "A2R_EXPLORER__MODEL": vllm_server.model_name,
        "A2R_SYNTHESIZER__BASE_URL": vllm_server.base_url,
        "A2R_SYNTHESIZER__MODEL": vllm_server.model_name,
        "A2R_EXPLORER__INPUT_PRICE_PER_MTOK": "0.1",
        "A2R_EXPLORER__OUTPUT_PRICE_PER_MTOK": "0.4",
        "A2R_SYNTHESIZER__INPUT_PRICE_PER_MTOK": "0.3",
        "A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK": "1.2",
    }
    out = tmp_path / "eval"
    command = [
        "eval", "builtin:basic_arithmetic", "--size", "10", "--n", "4", "--ns", "1", "2",
        "4", "--max-tokens", "32", "--seed", "3", "--concurrency", "4", "--out", str(out),
    ]  # fmt: skip
    done = a2r(*command, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "| Benchmark | Model | N | Pass@1 | Cons@N | Pass@N | A2R |" in done.stdout
    for n in (1, 2, 4):
        assert f"| builtin:basic_arithmetic | {vllm_server.model_name} -> " in done.stdout
        assert f"| {n} |" in done.stdout

    lines = read_results(out / "results.jsonl")
    assert len(lines) == 10 and all(len(line.paths) == 4 for line in lines)
    summary = json.loads((out / "results.json").read_text())
    assert summary["queries"] == 10 and set(summary["by_n"]) == {"1", "2", "4"}
    four = summary["by_n"]["4"]
    explore_tokens = sum(
        p.usage.input_tokens + p.usage.output_tokens for line in lines for p in line.paths
    )
    assert four["cons_tokens_per_query"] == pytest.approx(explore_tokens / 10)
    assert four["a2r_cost_per_query"] > summary["by_n"]["1"]["a2r_cost_per_query"] > 0
    assert (out / "table.md").read_text().startswith("| Benchmark |")

    image = Image.open(out / "accuracy_vs_cost.png").convert("L")
    assert image.size == (1200, 540) and len(image.getcolors(maxcolors=1 << 16)) > 20

    again = a2r(*command, env=env)
    assert again.returncode == 0 and len(read_results(out / "results.jsonl")) == 10  # all skipped

    # --paths-from: another synthesis over the saved paths; the server answers syntheses only
    served = vllm_server.requests_served()
    other = tmp_path / "tally"
    reuse = [*command[:-1], str(other), "--ns", "4", "--tally", "--paths-from", str(out)]
    done = a2r(*reuse, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    assert vllm_server.requests_served() - served == 10
    reused = {line.key: line for line in read_results(other / "results.jsonl")}
    assert len(reused) == 10
    for line in lines:
        assert reused[line.key].paths == line.paths
        cell, before = reused[line.key].by_n["4"], line.by_n["4"]
        assert cell.explore_usage == before.explore_usage
        assert cell.synthesize_usage.input_tokens > before.synthesize_usage.input_tokens

    # --keep-syntheses: only the variant is synthesized, the rest of each line is kept
    served = vllm_server.requests_served()
    variant = tmp_path / "variant"
    keep = [*command[:-1], str(variant), "--ns", "4", "--variants", "tally", "--keep-syntheses"]
    done = a2r(*keep, "--paths-from", str(out), env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    assert vllm_server.requests_served() - served == 10
    kept = {line.key: line for line in read_results(variant / "results.jsonl")}
    assert len(kept) == 10
    for line in lines:
        assert kept[line.key].by_n["4"] == line.by_n["4"]
        tally = kept[line.key].policies["tally"]
        assert tally.usage.input_tokens > line.by_n["4"].explore_usage.input_tokens
