"""The RL pieces that are ours: dynamic sampling, the reward, the config."""

import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

pytest.importorskip("yaml", reason="pyyaml (pip install 'a2r-graph[train]')")

from a2r_graph.train.grpo import (
    AnswerReward,
    TrainConfig,
    drop_zero_variance_groups,
    fill_with_informative_groups,
)


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


PAD = 0


class FakeRollouts:
    """Stands in for TRL's ``_generate_and_score_completions``: per group of G rows, prompts and
    completions of random lengths (padded as TRL pads them), rewards all equal except for every
    ``every``-th group generated, group-normalized advantages, per-token log-probabilities.
    Records each group as generated (unpadded) to check what the batch holds."""

    def __init__(self, group_size: int, every: int, seed: int = 0):
        self.group_size, self.every = group_size, every
        self.rng = random.Random(seed)
        self.groups: list[dict] = []  # every group generated, in order
        self.calls: list[int] = []  # rows asked per call

    def __call__(self, rows: list[dict]) -> dict:
        torch = needs("torch")
        self.calls.append(len(rows))
        assert len(rows) % self.group_size == 0
        prompts, completions, logps, advantages = [], [], [], []
        for start in range(0, len(rows), self.group_size):
            prompt = rows[start]["prompt"]
            assert all(row["prompt"] == prompt for row in rows[start : start + self.group_size])
            informative = len(self.groups) % self.every == self.every - 1
            rewards = [float(i == 0) if informative else 0.5 for i in range(self.group_size)]
            rewards = torch.tensor(rewards)
            group_adv = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
            group = {"prompt": prompt, "informative": informative, "rows": []}
            for i in range(self.group_size):
                completion = [self.rng.randint(1, 50) for _ in range(self.rng.randint(1, 7))]
                logp = [-self.rng.random() for _ in completion]
                prompts.append([prompt] * self.rng.randint(1, 5))
                completions.append(completion)
                logps.append(logp)
                advantages.append(float(group_adv[i]))
                group["rows"].append((completion, logp, float(group_adv[i])))
            self.groups.append(group)

        def padded(seqs, value, left=False):
            width = max(map(len, seqs))
            return torch.tensor(
                [[value] * (width - len(x)) + x if left else x + [value] * (width - len(x))
                 for x in seqs]
            )  # fmt: skip

        mask = padded([[1] * len(c) for c in completions], 0)
        return {
            "prompt_ids": padded(prompts, PAD, left=True),
            "prompt_mask": padded([[1] * len(p) for p in prompts], 0, left=True),
            "completion_ids": padded(completions, PAD),
            "completion_mask": mask,
            "old_per_token_logps": padded(logps, 0.0),
            "advantages": torch.tensor(advantages),
            "num_items_in_batch": mask.sum(),
        }


def fresh_prompts(group_size: int):
    counter = iter(range(1000, 100000))

    def draw(count: int) -> list[dict]:
        assert count >= 1
        return [
            {"prompt": p} for p in [next(counter) for _ in range(count)] for _ in range(group_size)
        ]

    return draw


def step_rows(step: int, groups: int, group_size: int) -> list[dict]:
    return [{"prompt": step * 100 + g} for g in range(groups) for _ in range(group_size)]


def per_token_loss(output):
    """A stand-in policy loss with TRL's shape: -advantage x log-probability, per token."""
    return -output["advantages"].unsqueeze(1) * output["old_per_token_logps"]


def test_refill_fills_every_step_with_informative_groups_and_the_loss_is_theirs():
    needs("torch")
    G, target = 4, 4
    fake = FakeRollouts(group_size=G, every=5)  # 80% of the groups have no reward variance
    draw = fresh_prompts(G)
    for step in range(10):
        first, calls = len(fake.groups), len(fake.calls)
        batch, report = fill_with_informative_groups(
            fake, step_rows(step, target, G), draw, group_size=G, max_rounds=8, pad_token_id=PAD
        )
        generated = fake.groups[first:]
        expected = [g for g in generated if g["informative"]][:target]
        # the step has its full number of groups, each with reward variance
        assert batch["completion_ids"].shape[0] == target * G
        assert report.groups_kept == target and report.groups_short == 0
        assert report.groups_generated == len(generated) > target
        assert report.groups_zero_variance == sum(not g["informative"] for g in generated)
        assert report.rounds == len(fake.calls) - calls - 1 <= 8
        advantages = batch["advantages"].view(target, G)
        assert bool(((advantages != 0).any(dim=1)).all())
        # the batch holds exactly the first informative groups, tokens intact (padding aside)
        rows = [row for group in expected for row in group["rows"]]
        for i, (completion, logp, adv) in enumerate(rows):
            n = len(completion)
            assert batch["completion_ids"][i, :n].tolist() == completion
            assert batch["completion_mask"][i].sum() == n
            assert batch["old_per_token_logps"][i, :n].tolist() == pytest.approx(logp)
            assert batch["advantages"][i].item() == pytest.approx(adv)
            prompt = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist()
            assert set(prompt) == {expected[i // G]["prompt"]}
        # DAPO's loss over the batch is the loss over those groups alone
        tokens = sum(len(c) for c, _, _ in rows)
        alone = sum(-adv * sum(logp) for _, logp, adv in rows) / tokens
        assert batch["num_items_in_batch"] == tokens
        assert dapo_loss(per_token_loss(batch), batch).item() == pytest.approx(alone, rel=1e-5)
    assert max(fake.calls) <= target * G  # a round draws at most a step's worth


def test_refill_rounds_are_bounded_and_a_short_step_masks_its_empty_slots():
    torch = needs("torch")
    G, target = 2, 3
    fake = FakeRollouts(group_size=G, every=10**9)  # no group ever has reward variance
    batch, report = fill_with_informative_groups(
        fake, step_rows(0, target, G), fresh_prompts(G), group_size=G, max_rounds=3,
        pad_token_id=PAD,
    )  # fmt: skip
    assert len(fake.calls) == 1 + 3 and report.rounds == 3
    assert fake.calls[1:] == [target * G] * 3  # nothing informative yet: a step's worth
    assert (report.groups_kept, report.groups_short, report.groups_generated) == (0, 3, 12)
    assert report.metrics()["dynamic_sampling/frac_groups_dropped"] == 1.0
    assert batch["completion_ids"].shape[0] == target * G
    assert batch["completion_mask"].sum() == 0 and batch["num_items_in_batch"] == 0
    assert dapo_loss(per_token_loss(batch), batch | {"num_items_in_batch": torch.tensor(1)}) == 0


def test_without_refill_rounds_zero_variance_groups_are_masked_as_before():
    torch = needs("torch")
    G = 2
    fake = FakeRollouts(group_size=G, every=2)  # every other group informative
    batch, report = fill_with_informative_groups(
        fake, step_rows(0, 4, G), fresh_prompts(G), group_size=G, max_rounds=0, pad_token_id=PAD
    )
    assert len(fake.calls) == 1 and report.rounds == 0
    assert (report.groups_kept, report.groups_short, report.groups_zero_variance) == (2, 2, 2)
    informative = [g for g in fake.groups if g["informative"]]
    tokens = sum(len(c) for g in informative for c, _, _ in g["rows"])
    assert batch["num_items_in_batch"] == tokens == batch["completion_mask"].sum()
    assert batch["advantages"][: 2 * G].ne(0).view(2, G).any(dim=1).all()  # kept ones first
    assert torch.equal(batch["advantages"][2 * G :], torch.zeros(2 * G))


def test_training_processes_take_the_same_refill_decisions():
    """Two processes (threads with an all-gather): one short of informative groups, one not.
    Both generate the same number of rounds and rows (collectives stay in step) and the token
    count is the global one."""
    torch = needs("torch")
    G, target, world = 2, 3, 2
    barrier = threading.Barrier(world)
    slots: list = [None] * world

    def gather_for(rank):
        def gather(tensor):
            slots[rank] = tensor.clone()
            barrier.wait()
            result = torch.cat(list(slots))
            barrier.wait()
            return result

        return gather

    fakes = [FakeRollouts(G, every=4, seed=1), FakeRollouts(G, every=1, seed=2)]
    results: list = [None] * world

    def process(rank):
        results[rank] = fill_with_informative_groups(
            fakes[rank], step_rows(rank, target, G), fresh_prompts(G), group_size=G,
            max_rounds=5, pad_token_id=PAD, gather=gather_for(rank),
        )  # fmt: skip

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert fakes[0].calls == fakes[1].calls and len(fakes[0].calls) > 1
    (batch0, report0), (batch1, report1) = results
    assert report0 == report1 and report0.groups_kept == world * target
    assert report0.groups_generated == 2 * sum(fakes[0].calls) // G
    assert (
        batch0["num_items_in_batch"]
        == batch1["num_items_in_batch"]
        == (batch0["completion_mask"].sum() + batch1["completion_mask"].sum())
    )
    for batch in (batch0, batch1):
        assert batch["advantages"].view(target, G).ne(0).any(dim=1).all()
