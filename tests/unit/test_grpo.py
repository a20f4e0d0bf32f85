"""The RL pieces that are ours: dynamic sampling, the reward, the config."""

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

pytest.importorskip("yaml", reason="pyyaml (pip install 'a2r-graph[train]')")

from a2r_graph.train.grpo import AnswerReward, TrainConfig, drop_zero_variance_groups


def dapo_loss(per_token_loss, output):
    """TRL's DAPO aggregation: a sum over masked tokens / the tokens of the batch."""
    return (per_token_loss * output["completion_mask"]).sum() / output["num_items_in_batch"]


def needs(module: str):
    """Skip the test without the train extra (``pytest tests/unit`` runs without it)."""
    return pytest.importorskip(module, reason=f"{module} (pip install 'a2r-graph[train]')")


def test_a_group_of_equal_rewards_contributes_nothing_to_the_loss():
    torch = needs("torch")
    # 3 groups of G=2; the middle group's rewards were all equal, so its advantages are 0
    advantages = torch.tensor([1.0, -1.0, 0.0, 0.0, -0.7, 0.7])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    per_token_loss = torch.arange(18, dtype=torch.float).view(6, 3)
    output = {
        "advantages": advantages,
        "completion_mask": mask.clone(),
        "num_items_in_batch": mask.sum(),
    }

    assert drop_zero_variance_groups(output, group_size=2) == pytest.approx(1 / 3)
    kept = [0, 1, 4, 5]
    alone = {"completion_mask": mask[kept], "num_items_in_batch": mask[kept].sum()}
    assert output["num_items_in_batch"] == 10  # the dropped group's 4 tokens are not counted
    assert dapo_loss(per_token_loss, output) == dapo_loss(per_token_loss[kept], alone)
    assert output["completion_mask"][2:4].sum() == 0


def test_nothing_is_dropped_when_every_group_has_signal():
    torch = needs("torch")
    output = {
        "advantages": torch.tensor([0.5, -0.5, 0.0, 1.0]),
        "completion_mask": torch.ones(4, 2, dtype=torch.int),
        "num_items_in_batch": torch.tensor(8),
    }
    assert drop_zero_variance_groups(output, group_size=2) == 0.0
    assert output["num_items_in_batch"] == 8


def test_the_reward_is_math_equivalence_of_the_last_box_with_the_gold_answer():
    pytest.importorskip("math_verify", reason="math-verify (pip install 'a2r-graph[eval]')")
    reward = AnswerReward(timeout_s=60)
    try:
        completions = [
            [{"role": "assistant", "content": "<think>hmm</think> so \\boxed{1/2}"}],
            [{"role": "assistant", "content": "first \\boxed{0.5}, no: \\boxed{2}"}],
            [{"role": "assistant", "content": "no box at all"}],
        ]
        assert reward([None] * 3, completions, answer=["0.5"] * 3) == [1.0, 0.0, 0.0]
    finally:
        reward.verifier.close()


def test_config_from_yaml_and_its_errors(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("model: m\ntrain_file: t.jsonl\noutput_dir: out\nnum_generations: 4\n")
    config = TrainConfig.from_yaml(path)
    assert (config.num_generations, config.temperature, config.epsilon) == (4, 0.7, 0.2)
    with pytest.raises(ValidationError, match="overlong_buffer must be smaller"):
        TrainConfig(model="m", train_file="t", output_dir="o", max_completion_length=64)
    with pytest.raises(ValidationError, match="num_generations"):
        TrainConfig(model="m", train_file="t", output_dir="o", num_generations=1)


def test_cli_reports_a_missing_or_invalid_config_by_field(tmp_path):
    a2r = str(Path(sys.executable).with_name("a2r"))

    def run(config):
        return subprocess.run(
            [a2r, "train-synthesizer", "--config", str(config)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    missing = run(tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "no such config file" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\ntrain_file: t\noutput_dir: o\nepsilon: -1\nfoo: 1\n")
    invalid = run(bad)
    assert invalid.returncode == 2
    assert "epsilon: Input should be greater than 0 (got -1)" in invalid.stderr
    assert "foo: Extra inputs are not permitted" in invalid.stderr
