"""GRPO learns: on a tiny model with a reward it can earn (vowels in the completion), a few
steps of ``a2r train-synthesizer``'s trainer move the policy towards the reward and change
the saved weights. A trainer that computes losses but learns nothing fails here."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl", reason="trl (pip install 'a2r-graph[train]')")
pytest.importorskip("datasets", reason="datasets (pip install 'a2r-graph[train]')")

VOWELS = frozenset("aeiouAEIOU")


def vowel_share(text: str) -> float:
    return sum(ch in VOWELS for ch in text) / max(len(text), 1)


def vowel_reward(prompts, completions, **_):
    """The share of vowels in each completion: a signal a random model can climb token by
    token (about a quarter of its bytes are vowels at the start)."""
    return [vowel_share(c[-1]["content"] if isinstance(c, list) else str(c)) for c in completions]


def expected_first_token_share(model_dir, prompts) -> float:
    """The policy's own expectation of the reward's measure on its first completion token,
    averaged over ``prompts``: exact, no sampling."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    shares = torch.tensor([vowel_share(tokenizer.decode([t])) for t in range(len(tokenizer))])
    total = 0.0
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer.apply_chat_template(
                prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            logits = model(**ids).logits[0, -1, : len(shares)]
            total += float(torch.softmax(logits, -1) @ shares)
    return total / len(prompts)


def test_grpo_steps_move_the_policy_towards_the_reward(tmp_path):
    from a2r_graph.train.smoke import run

    figures = run(device="cpu", steps=8, out=tmp_path, reward=vowel_reward, learning_rate=1e-2)
    examples = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    prompts = [example["prompt"] for example in examples]
    before = expected_first_token_share(tmp_path / "tiny-model", prompts)
    after = expected_first_token_share(tmp_path / "ckpt", prompts)
    print(f"expected vowel share of the first token: {before:.3f} -> {after:.3f}")
    assert after > before + 0.02, (before, after)
    assert figures["changed_weights"]  # the smoke run checked it too

    metrics = (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()
    rewards = [s["rewards/vowel_reward/mean"] for s in map(json.loads, metrics) if "reward" in s]
    print("reward per step:", [round(r, 3) for r in rewards])
    assert sum(rewards[-3:]) > sum(rewards[:3]), rewards  # and the samples earned more
