"""Train the synthesizer (two GRPO steps on CPU), serve the checkpoint with vLLM, and answer
through it: curate -> train-synthesizer -> vllm serve -> the graph's synthesizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a2r_graph import A2RContext, build_graph
from a2r_graph.train.smoke import changed_weights
from servers.engines import EmbeddedVLLM, ensure_model
from tests.integration.conftest import a2r
from tests.result_lines import as_json, result_line, saved_path

pytestmark = pytest.mark.integration


def eval_results(path: Path) -> Path:
    """Explorer samples as `a2r eval` saves them: 4 queries, right and wrong candidates."""
    lines = []
    for q in range(4):
        gold = str(10 + q)
        answers = [(f"Adding up gives \\boxed{{{gold}}}.", True), ("So it is \\boxed{3}.", False)]
        paths = [saved_path(index=i, answer=a, correct=ok) for i, (a, ok) in enumerate(answers)]
        lines.append(
            result_line(f"q{q}", problem=f"What is {q} + 10?", gold=gold, k=2, paths=paths)
        )
    path.write_text("\n".join(json.dumps(as_json(line)) for line in lines) + "\n")
    return path


async def test_two_grpo_steps_then_the_checkpoint_serves_as_the_synthesizer(vllm_server, tmp_path):
    train_file = tmp_path / "train.jsonl"
    curated = a2r("curate", str(eval_results(tmp_path / "results.jsonl")), "--n", "2",
                  "--per-query", "1", "--out", str(train_file))  # fmt: skip
    assert curated.returncode == 0, curated.stderr
    checkpoint = tmp_path / "synth-ckpt"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: {ensure_model('smollm2-135m')}\ntrain_file: {train_file}\n"
        f"output_dir: {checkpoint}\nnum_generations: 2\nprompts_per_step: 2\nmax_steps: 2\n"
        "max_completion_length: 16\noverlong_buffer: 4\nlearning_rate: 1.0e-5\n"
        "max_refill_rounds: 1\n"
    )
    trained = a2r("train-synthesizer", "--config", str(config), timeout=1200)
    assert trained.returncode == 0, trained.stderr[-3000:]

    steps = [json.loads(line) for line in (checkpoint / "metrics.jsonl").read_text().splitlines()]
    logged = [s for s in steps if "reward" in s]
    assert [s["step"] for s in logged] == [1, 2]
    for step in logged:
        assert 0.0 <= step["dynamic_sampling/frac_groups_dropped"] <= 1.0
        # refill: at most one extra round; every slot holds a group with signal or is masked
        assert step["dynamic_sampling/rounds"] <= 1
        assert step["dynamic_sampling/groups_kept"] + step["dynamic_sampling/groups_short"] == 2
        assert {"rewards/answer_reward/mean", "entropy", "completions/mean_length"} <= set(step)
        print(f"GRPO step {step['step']}: {step['step_time']:.1f} s")
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "config.json").is_file()
    base = ensure_model("smollm2-135m") / "model.safetensors"
    assert changed_weights(base, checkpoint / "model.safetensors", lora=False)  # it learned
    settings = json.loads((checkpoint / "train_settings.json").read_text())
    assert settings["resolved"] == {  # on a CPU
        "dtype": "float32", "gradient_checkpointing": False, "use_vllm": False,
    }  # fmt: skip

    with EmbeddedVLLM(model=str(checkpoint), served_model_name="a2r-synth") as served:
        context = A2RContext(
            explorer={"base_url": vllm_server.base_url, "model": vllm_server.model_name,
                      "max_tokens": 32, "seed": 1},
            synthesizer={"base_url": served.base_url, "model": "a2r-synth", "max_tokens": 32},
            n=2,
        )  # fmt: skip
        result = await build_graph().ainvoke({"question": "What is 3 + 10?"}, context=context)
    assert result["synthesis"]["model"] == "a2r-synth"
    assert result["synthesis"]["usage"]["output_tokens"] > 0
    assert result["usage"]["synthesize"]["calls"] == 1
