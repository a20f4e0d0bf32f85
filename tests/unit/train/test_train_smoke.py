"""The GPU smoke test (scripts/gpu_smoke.py) on a CPU: a tiny model built on the spot trains
for two GRPO steps with dynamic sampling, is saved, reloads and generates."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="trl (pip install 'a2r-graph[train]')")
pytest.importorskip("datasets", reason="datasets (pip install 'a2r-graph[train]')")

ROOT = Path(__file__).resolve().parents[3]


def test_gpu_smoke_script_runs_on_a_cpu(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_smoke.py"), "--device", "cpu",
         "--steps", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["device"] == "cpu" and figures["steps"] == 2
    assert figures["settings"]["dtype"] == "float32"
    assert figures["settings"]["gradient_checkpointing"] is False
    assert figures["saved_weight_dtypes"] == ["F32"]
    assert figures["changed_weights"]  # the steps changed the weights they saved
    assert figures["generated_tokens_after_reload"] >= 1
    assert len(figures["step_time_s"]) == 2
    for step in figures["dynamic_sampling"]:
        assert step["groups_kept"] + step["groups_short"] == 4
        assert step["groups_generated"] >= 4 and step["rounds"] <= 2
    assert "gpu smoke OK on cpu" in done.stderr
    checkpoint = Path(figures["checkpoint"])
    assert (checkpoint / "model.safetensors").is_file()
    assert (checkpoint / "tokenizer.json").is_file()
    settings = json.loads((checkpoint / "train_settings.json").read_text())
    assert settings["grpo_config"]["loss_type"] == "dapo"
    assert settings["grpo_config"]["gradient_accumulation_steps"] == 2  # 16 rollouts, 8 a pass
