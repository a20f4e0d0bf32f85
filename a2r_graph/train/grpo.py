"""RL-tune the synthesizer with TRL's GRPOTrainer, the way the paper trains it (section 3.3).

- DAPO token-level loss (``loss_type="dapo"``) with symmetric fixed clipping
  (``epsilon_high == epsilon``), no KL term (``beta=0``);
- fully on-policy: each generation batch serves exactly one optimizer step
  (``num_iterations=1``, ``steps_per_generation=1``), so the "old" policy is the current one;
- rollouts at temperature 0.7; a binary reward, 1 when the completion's last ``\\boxed{}`` is
  math-equivalent to the gold answer (math-verify, gold first, in a bounded process pool),
  plus DAPO's soft overlong penalty;
- **dynamic sampling**: a group of G rollouts whose rewards are all equal has no learning
  signal; ``DynamicSamplingGRPOTrainer`` drops its tokens from the loss and its normalizer
  (TRL only zeroes its advantages, which still dilutes the token mean). Unlike DAPO and verl's
  ``filter_groups`` it does not draw replacement groups; the fraction dropped is logged.

Equivalent verl settings for multi-GPU scale: ``algorithm.filter_groups.enable=True``
(``metric=acc``), ``actor.clip_ratio_low = actor.clip_ratio_high = 0.2``,
``actor.loss_agg_mode=token-mean``, ``actor.use_kl_loss=False``, ``actor.ppo_epochs=1`` with
``ppo_mini_batch_size`` equal to the train batch (on-policy), ``rollout.temperature=0.7``,
``rollout.n=G``, and ``reward_model.overlong_buffer.enable=True``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from a2r_graph.answers import last_boxed, split_reasoning


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainConfig(BaseModel):
    """``a2r train-synthesizer --config FILE.yaml``: every field, with the paper's defaults."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="HF model directory (or id) of the synthesizer to tune.")
    train_file: Path = Field(description="JSONL from `a2r curate`.")
    output_dir: Path
    num_generations: int = Field(8, ge=2, description="G: rollouts per prompt.")
    prompts_per_step: int = Field(4, ge=1, description="Prompts per optimizer step.")
    max_steps: int = Field(100, ge=1)
    learning_rate: float = Field(1e-6, gt=0)
    temperature: float = Field(0.7, gt=0)
    epsilon: float = Field(0.2, gt=0, description="Clip range, both sides (symmetric).")
    max_completion_length: int = Field(1024, ge=8)
    overlong_buffer: int = Field(
        256, ge=0, description="Soft overlong penalty over the last tokens (0: off)."
    )
    lora: LoraSettings | None = None
    seed: int = 0
    verify_timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _buffer_fits(self) -> TrainConfig:
        if self.overlong_buffer >= self.max_completion_length:
            raise ValueError("overlong_buffer must be smaller than max_completion_length")
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


class AnswerReward:
    """Binary reward: 1.0 when the completion's last ``\\boxed{}`` matches the gold answer."""

    __name__ = "answer_reward"  # TRL names the logged metric after it

    def __init__(self, timeout_s: float = 10.0):
        from a2r_graph.eval.verify import Verifier

        self.verifier = Verifier(timeout_s=timeout_s)

    def __call__(
        self, prompts: list, completions: list, answer: list[str], **_: Any
    ) -> list[float]:
        return [
            float(self.verifier.correct_sync(gold, boxed_answer(completion)))
            for completion, gold in zip(completions, answer, strict=True)
        ]


def boxed_answer(completion: Any) -> str | None:
    text = completion[-1]["content"] if isinstance(completion, list) else str(completion)
    return last_boxed(split_reasoning(text)[1])


def drop_zero_variance_groups(output: dict, group_size: int) -> float:
    """Dynamic sampling on a scored generation batch (TRL's dict of tensors), in place: the
    rows of every group whose ``group_size`` rollouts all got the same reward (with group
    normalization, advantages all exactly zero) leave ``completion_mask``, so they add neither
    loss nor tokens to DAPO's token-mean normalizer. Returns the fraction of groups dropped."""
    groups = output["advantages"].view(-1, group_size)
    dropped = (groups == 0).all(dim=1)
    keep = (~dropped).repeat_interleave(group_size).unsqueeze(1)
    output["completion_mask"] = output["completion_mask"] * keep.to(output["completion_mask"].dtype)
    output["num_items_in_batch"] = output["completion_mask"].sum()
    return dropped.float().mean().item()


def make_trainer(config: TrainConfig, callbacks: list | None = None):
    """The configured ``DynamicSamplingGRPOTrainer`` (imports torch and TRL on call)."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.rewards import get_soft_overlong_punishment

    class DynamicSamplingGRPOTrainer(GRPOTrainer):
        """GRPO whose zero-variance groups leave the loss and its token normalizer."""

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            dropped = drop_zero_variance_groups(output, self.num_generations)
            output["num_items_in_batch"] = self.accelerator.gather(
                output["num_items_in_batch"]
            ).sum()
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["dynamic_sampling/frac_groups_dropped"].append(dropped)
            return output

    args = GRPOConfig(
        output_dir=str(config.output_dir),
        loss_type="dapo",
        epsilon=config.epsilon,
        epsilon_high=config.epsilon,
        beta=0.0,
        num_iterations=1,
        steps_per_generation=1,
        gradient_accumulation_steps=1,
        per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations,
        temperature=config.temperature,
        max_completion_length=config.max_completion_length,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps,
        seed=config.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=_no_accelerator(),
    )
    reward_funcs: list = [AnswerReward(config.verify_timeout_s)]
    if config.overlong_buffer:
        reward_funcs.append(
            get_soft_overlong_punishment(config.max_completion_length, config.overlong_buffer)
        )
    peft_config = None
    if config.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    dataset = load_dataset("json", data_files=str(config.train_file), split="train")
    model_path = os.path.expanduser(config.model)
    return DynamicSamplingGRPOTrainer(
        # Loaded here, not by name: a converted checkpoint may lack `architectures` in its config.
        model=AutoModelForCausalLM.from_pretrained(model_path),
        processing_class=AutoTokenizer.from_pretrained(model_path),
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        peft_config=peft_config,
        callbacks=callbacks or [],
    )


def _no_accelerator() -> bool:
    import torch

    return not torch.cuda.is_available()


def train(config: TrainConfig) -> Path:
    """Train, log metrics to ``output_dir/metrics.jsonl``, save the checkpoint (full weights,
    or the LoRA adapter) with its tokenizer to ``output_dir``; return that directory."""
    from transformers import TrainerCallback

    config.output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = config.output_dir / "metrics.jsonl"

    class MetricsLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                with metrics_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    trainer = make_trainer(config, callbacks=[MetricsLog()])
    try:
        trainer.train()
    finally:
        for reward in trainer.reward_funcs:
            if isinstance(reward, AnswerReward):
                reward.verifier.close()
    trainer.save_model(str(config.output_dir))
    trainer.processing_class.save_pretrained(str(config.output_dir))
    return config.output_dir
