"""RL-tune the synthesizer with TRL's GRPOTrainer, the way the paper trains it (section 3.3).

- DAPO token-level loss (``loss_type="dapo"``) with symmetric fixed clipping
  (``epsilon_high == epsilon``), no KL term (``beta=0``);
- fully on-policy: each generation batch serves exactly one optimizer step
  (``num_iterations=1``; with ``micro_batch_size`` the batch is split into gradient-accumulation
  micro-batches of that one step), so the "old" policy is the current one;
- rollouts at temperature 0.7; a binary reward, 1 when the completion's last ``\\boxed{}`` is
  math-equivalent to the gold answer (math-verify, gold first, in a bounded process pool),
  plus DAPO's soft overlong penalty;
- **dynamic sampling with refill**, as DAPO and verl's ``filter_groups`` do: a group of G
  rollouts whose rewards are all equal has no learning signal; ``DynamicSamplingGRPOTrainer``
  keeps generating groups for fresh prompts (at most ``max_refill_rounds`` extra rounds) until
  the step has ``prompts_per_step`` groups with reward variance. A slot still without one after
  the last round holds a zero-variance group whose tokens leave the loss and its normalizer (TRL
  alone only zeroes its advantages, which still dilutes the token mean). Rounds, groups
  generated, kept and dropped go to the step's metrics.

On a GPU the defaults follow the hardware: bf16 mixed precision, gradient checkpointing, and vLLM
generation when vLLM is installed (``use_vllm``: ``colocate`` in the training processes, or
``server`` against ``servers/gpu/trl-vllm-serve.sh``); several GPUs through ``accelerate launch``
with ``examples/accelerate/*.yaml`` (DeepSpeed ZeRO-2/3 or FSDP2).

Equivalent verl settings for multi-GPU scale: ``algorithm.filter_groups.enable=True``
(``metric=acc``, ``max_num_gen_batches`` for the refill bound), ``actor.clip_ratio_low =
actor.clip_ratio_high = 0.2``, ``actor.loss_agg_mode=token-mean``, ``actor.use_kl_loss=False``,
``actor.ppo_epochs=1`` with ``ppo_mini_batch_size`` equal to the train batch (on-policy),
``rollout.temperature=0.7``, ``rollout.n=G``, and ``reward_model.overlong_buffer.enable=True``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from a2r_graph.answers import last_boxed, split_reasoning

Dtype = Literal["auto", "bfloat16", "float16", "float32"]


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
    prompts_per_step: int = Field(
        4, ge=1, description="Prompts (groups) per optimizer step, per training process."
    )
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="Sequences per forward/backward pass (gradient accumulation within the one "
        "on-policy step); must divide prompts_per_step * num_generations. Default: all at once.",
    )
    max_steps: int = Field(100, ge=1)
    learning_rate: float = Field(1e-6, gt=0)
    temperature: float = Field(0.7, gt=0)
    epsilon: float = Field(0.2, gt=0, description="Clip range, both sides (symmetric).")
    max_completion_length: int = Field(1024, ge=8)
    overlong_buffer: int = Field(
        256, ge=0, description="Soft overlong penalty over the last tokens (0: off)."
    )
    max_refill_rounds: int = Field(
        4,
        ge=0,
        description="Dynamic sampling: extra generation rounds per step to replace groups whose "
        "rewards are all equal (0: drop them without replacement).",
    )
    lora: LoraSettings | None = None
    seed: int = 0
    verify_timeout_s: float = Field(10.0, gt=0)
    save_steps: int = Field(0, ge=0, description="Save a checkpoint every N steps (0: at the end).")
    # What a GPU needs; "auto" follows the hardware found (see resolve_hardware_settings).
    dtype: Dtype = Field(
        "auto",
        description="Mixed-precision compute dtype. auto: bfloat16 on a GPU that supports it, "
        "else float32. Full fine-tuning keeps float32 master weights and saves the checkpoint in "
        "this dtype; a LoRA base model is loaded in it.",
    )
    gradient_checkpointing: Literal["auto"] | bool = Field(
        "auto", description="auto: on when training on a GPU."
    )
    use_vllm: Literal["auto"] | bool = Field(
        "auto", description="Generate with vLLM. auto: on a GPU when vllm is installed."
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="colocate: vLLM in the training processes; server: a separate "
        "`servers/gpu/trl-vllm-serve.sh` on GPUs of its own.",
    )
    vllm_server_base_url: str | None = Field(
        None, description="server mode: the trl vllm-serve URL (default http://0.0.0.0:8000)."
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="colocate mode: GPU memory share for vLLM."
    )
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="colocate mode.")
    vllm_max_model_length: int | None = Field(
        None, ge=16, description="colocate mode: vLLM context (prompt + completion)."
    )
    vllm_enable_sleep_mode: bool = Field(
        False, description="colocate mode: free vLLM's memory during the optimizer step."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.overlong_buffer >= self.max_completion_length:
            raise ValueError("overlong_buffer must be smaller than max_completion_length")
        rollouts = self.prompts_per_step * self.num_generations
        if self.micro_batch_size is not None and rollouts % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size must divide prompts_per_step * num_generations ({rollouts})"
            )
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


@dataclass(frozen=True)
class Hardware:
    """What ``auto`` settings depend on."""

    cuda: bool = False
    bf16: bool = False
    vllm: bool = False

    @classmethod
    def detect(cls) -> Hardware:
        import torch

        cuda = torch.cuda.is_available()
        return cls(
            cuda=cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            vllm=importlib.util.find_spec("vllm") is not None,
        )


@dataclass(frozen=True)
class HardwareSettings:
    dtype: Literal["bfloat16", "float16", "float32"]
    gradient_checkpointing: bool
    use_vllm: bool


def resolve_hardware_settings(config: TrainConfig, hardware: Hardware) -> HardwareSettings:
    """The ``auto`` fields made concrete for ``hardware``; a setting it cannot run is an error."""
    dtype = config.dtype
    if dtype == "auto":
        dtype = "bfloat16" if hardware.bf16 else "float32"
    elif dtype == "float16" and not hardware.cuda:
        raise ValueError("dtype float16 needs a CUDA GPU (on a CPU use float32 or bfloat16)")
    elif dtype == "bfloat16" and hardware.cuda and not hardware.bf16:
        raise ValueError("this GPU has no bfloat16 support: use dtype float16 or float32")
    use_vllm = config.use_vllm
    if use_vllm == "auto":
        use_vllm = hardware.cuda and hardware.vllm
    elif use_vllm and not (hardware.cuda and hardware.vllm):
        raise ValueError("use_vllm needs a CUDA GPU and vllm installed (pip install vllm)")
    checkpointing = config.gradient_checkpointing
    if checkpointing == "auto":
        checkpointing = hardware.cuda
    return HardwareSettings(dtype, bool(checkpointing), bool(use_vllm))


def grpo_arguments(config: TrainConfig, hardware: Hardware) -> dict[str, Any]:
    """The keyword arguments of TRL's ``GRPOConfig`` for ``config`` on ``hardware``."""
    settings = resolve_hardware_settings(config, hardware)
    rollouts = config.prompts_per_step * config.num_generations
    micro = config.micro_batch_size or rollouts
    accumulation = rollouts // micro
    arguments: dict[str, Any] = {
        "output_dir": str(config.output_dir),
        "loss_type": "dapo",
        "epsilon": config.epsilon,
        "epsilon_high": config.epsilon,
        "beta": 0.0,
        # On-policy: one generation batch (prompts_per_step groups per process) per optimizer
        # step, in `accumulation` micro-batches of `micro` sequences.
        "num_iterations": 1,
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": accumulation,
        "steps_per_generation": accumulation,
        "num_generations": config.num_generations,
        "temperature": config.temperature,
        "max_completion_length": config.max_completion_length,
        "learning_rate": config.learning_rate,
        "max_steps": config.max_steps,
        "seed": config.seed,
        "logging_steps": 1,
        "save_strategy": "steps" if config.save_steps else "no",
        "report_to": [],
        "use_cpu": not hardware.cuda,
        "bf16": settings.dtype == "bfloat16",
        "fp16": settings.dtype == "float16",
        "gradient_checkpointing": settings.gradient_checkpointing,
        "use_vllm": settings.use_vllm,
    }
    if config.save_steps:
        arguments["save_steps"] = config.save_steps
    if settings.use_vllm:
        arguments["vllm_mode"] = config.vllm_mode
        if config.vllm_mode == "server":
            if config.vllm_server_base_url:
                arguments["vllm_server_base_url"] = config.vllm_server_base_url
        else:
            arguments |= {
                "vllm_gpu_memory_utilization": config.vllm_gpu_memory_utilization,
                "vllm_tensor_parallel_size": config.vllm_tensor_parallel_size,
                "vllm_max_model_length": config.vllm_max_model_length,
                "vllm_enable_sleep_mode": config.vllm_enable_sleep_mode,
            }
    return arguments


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


# Dynamic sampling -----------------------------------------------------------------------------


def group_has_signal(advantages: Any, group_size: int) -> Any:
    """Per group of ``group_size`` consecutive rows: whether its rewards differ (with group
    normalization, the advantages of a group whose rewards are all equal are exactly zero)."""
    return (advantages.reshape(-1, group_size, *advantages.shape[1:]) != 0).flatten(1).any(dim=1)


def drop_zero_variance_groups(output: dict, group_size: int) -> float:
    """Dynamic sampling on a scored generation batch (TRL's dict of tensors), in place: the
    rows of every group whose ``group_size`` rollouts all got the same reward (with group
    normalization, advantages all exactly zero) leave ``completion_mask``, so they add neither
    loss nor tokens to DAPO's token-mean normalizer. Returns the fraction of groups dropped."""
    dropped = ~group_has_signal(output["advantages"], group_size)
    keep = (~dropped).repeat_interleave(group_size).unsqueeze(1)
    output["completion_mask"] = output["completion_mask"] * keep.to(output["completion_mask"].dtype)
    output["num_items_in_batch"] = _loss_mask(output).sum()
    return dropped.float().mean().item()


# How each entry of TRL's scored batch is padded when batches of several rounds are joined.
_LEFT_PADDED = {"prompt_ids": None, "prompt_mask": 0}  # None: the tokenizer's pad token
_RIGHT_PADDED = {
    "completion_ids": None,
    "completion_mask": 0,
    "tool_mask": 1,
    "old_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "importance_sampling_ratio": 0.0,
    "advantages": 0.0,
}
REFILLABLE_KEYS = frozenset({*_LEFT_PADDED, *_RIGHT_PADDED, "num_items_in_batch"})


@dataclass
class RefillReport:
    """One step's dynamic sampling, summed over the training processes."""

    rounds: int  # extra generation rounds
    groups_generated: int
    groups_zero_variance: int  # dropped: all rewards equal
    groups_kept: int  # groups with reward variance in the step's batch
    groups_short: int  # batch slots left without one (a zero-variance group, masked out)
    groups_surplus: int  # groups with variance generated beyond the batch, unused

    def metrics(self) -> dict[str, float]:
        values: dict[str, float] = {f"dynamic_sampling/{k}": v for k, v in asdict(self).items()}
        values["dynamic_sampling/frac_groups_dropped"] = self.groups_zero_variance / max(
            1, self.groups_generated
        )
        return values


def _loss_mask(output: dict) -> Any:
    mask = output["completion_mask"]
    return mask * output["tool_mask"] if "tool_mask" in output else mask


def _pad_width(tensor: Any, width: int, value: Any, left: bool) -> Any:
    import torch

    missing = width - tensor.size(1)
    if missing <= 0:
        return tensor
    fill = tensor.new_full((tensor.size(0), missing, *tensor.shape[2:]), value)
    return torch.cat([fill, tensor] if left else [tensor, fill], dim=1)


def join_scored_batches(pieces: list[dict], pad_token_id: int) -> dict:
    """Concatenate TRL scored batches row-wise: prompts stay left-padded and completions (and
    their per-token tensors) right-padded to the widest piece."""
    import torch

    joined = {}
    for key in pieces[0]:
        if key == "num_items_in_batch":
            continue
        tensors = [piece[key] for piece in pieces]
        if tensors[0].dim() >= 2:
            left = key in _LEFT_PADDED
            value = (_LEFT_PADDED if left else _RIGHT_PADDED).get(key, 0)
            value = pad_token_id if value is None else value
            width = max(t.size(1) for t in tensors)
            tensors = [_pad_width(t, width, value, left) for t in tensors]
        joined[key] = torch.cat(tensors, dim=0)
    return joined


def _take_rows(output: dict, rows: Any, masked: bool) -> dict:
    piece = {k: v[rows] for k, v in output.items() if k != "num_items_in_batch"}
    if masked:
        piece["completion_mask"] = piece["completion_mask"] * 0
    return piece


def fill_with_informative_groups(
    generate: Callable[[list], dict],
    rows: list,
    draw: Callable[[int], list],
    *,
    group_size: int,
    max_rounds: int,
    pad_token_id: int,
    gather: Callable[[Any], Any] | None = None,
) -> tuple[dict, RefillReport]:
    """Dynamic sampling with refill (DAPO; verl's ``filter_groups``) for one step.

    ``generate(rows)`` scores the rollouts of ``rows`` (``group_size`` consecutive copies of
    each prompt) as TRL's ``_generate_and_score_completions`` does; ``draw(n)`` gives the rows of
    ``n`` fresh prompts. Generating goes on until the step has as many groups with reward
    variance as ``rows`` has groups, for at most ``max_rounds`` extra rounds; each round asks
    for what the process missing the most still needs at the rate of informative groups seen
    so far (at most a step's worth). The batch returned has the size of ``rows``: the first
    informative groups, then, for slots still empty, zero-variance groups with their tokens
    masked out; ``num_items_in_batch`` counts its loss tokens. ``gather`` is
    ``accelerator.gather`` with several training processes: they take the same decisions and
    generate the same number of rows each round."""
    import torch

    gather = gather or (lambda tensor: tensor)
    target = len(rows) // group_size
    parts: list[tuple[dict, Any]] = []
    rounds = 0
    while True:
        output = generate(rows)
        if not set(output) <= REFILLABLE_KEYS:  # e.g. images: mask, as without refill
            lost = round(drop_zero_variance_groups(output, group_size) * target)
            output["num_items_in_batch"] = gather(output["num_items_in_batch"].view(1)).sum()
            device = output["advantages"].device
            groups, lost = gather(torch.tensor([target, lost], device=device)).view(-1, 2).sum(0)
            groups, lost = int(groups), int(lost)
            return output, RefillReport(0, groups, lost, groups - lost, lost, 0)
        signal = group_has_signal(output["advantages"], group_size)
        parts.append((output, signal))
        device = output["advantages"].device
        kept = sum(int(s.sum()) for _, s in parts)
        generated = sum(len(s) for _, s in parts)
        totals = gather(torch.tensor([max(0, target - kept), kept, generated], device=device))
        totals = totals.view(-1, 3)
        most_missing = int(totals[:, 0].max())
        all_kept, all_generated = int(totals[:, 1].sum()), int(totals[:, 2].sum())
        if most_missing == 0 or rounds >= max_rounds:
            break
        rounds += 1
        wanted = target if all_kept == 0 else math.ceil(most_missing * all_generated / all_kept)
        rows = draw(min(target, max(1, wanted)))

    informative = [(p, g) for p, (_, s) in enumerate(parts) for g in s.nonzero().flatten().tolist()]
    empty = [(p, g) for p, (_, s) in enumerate(parts) for g in (~s).nonzero().flatten().tolist()]
    chosen = [(p, g, False) for p, g in informative[:target]]
    chosen += [(p, g, True) for p, g in empty[: target - len(chosen)]]
    pieces: list[tuple[int, list[int], bool]] = []
    for p, g, masked in chosen:  # runs of groups of one part share a piece
        if pieces and pieces[-1][0] == p and pieces[-1][2] == masked:
            pieces[-1][1].append(g)
        else:
            pieces.append((p, [g], masked))
    offsets = torch.arange(group_size)
    batch = join_scored_batches(
        [
            _take_rows(
                parts[p][0],
                (torch.tensor(groups).unsqueeze(1) * group_size + offsets).flatten().to(device),
                masked,
            )
            for p, groups, masked in pieces
        ],
        pad_token_id,
    )
    batch["num_items_in_batch"] = gather(_loss_mask(batch).sum().view(1)).sum()
    short = sum(masked for _, _, masked in chosen)
    counts = (
        gather(
            torch.tensor(
                [len(informative) - (target - short), generated - kept, target - short, short],
                device=device,
            )
        )
        .view(-1, 4)
        .sum(0)
        .tolist()
    )
    surplus, zero_variance, in_batch, short_total = (int(c) for c in counts)
    report = RefillReport(
        rounds=rounds,
        groups_generated=all_generated,
        groups_zero_variance=zero_variance,
        groups_kept=in_batch,
        groups_short=short_total,
        groups_surplus=surplus,
    )
    return batch, report


# The trainer ----------------------------------------------------------------------------------


def trainer_class():
    """``DynamicSamplingGRPOTrainer`` (imports TRL on call)."""
    from trl import GRPOTrainer

    class DynamicSamplingGRPOTrainer(GRPOTrainer):
        """GRPO whose steps are filled with groups that have reward variance (see the module)."""

        max_refill_rounds = 0
        _refill_rng: random.Random | None = None

        def _generate_and_score_completions(self, inputs):
            generate = super()._generate_and_score_completions
            if not cast(Any, self.model).training:  # evaluation: no refill, zero variance masked
                output = generate(inputs)
                drop_zero_variance_groups(output, self.num_generations_eval or 1)
                output["num_items_in_batch"] = self.accelerator.gather(
                    output["num_items_in_batch"]
                ).sum()
                return output
            refillable = hasattr(self.train_dataset, "__getitem__")
            output, report = fill_with_informative_groups(
                generate,
                inputs,
                self._draw_groups,
                group_size=cast(int, self.num_generations),
                max_rounds=self.max_refill_rounds if refillable else 0,
                pad_token_id=self._tokenizer.pad_token_id,
                gather=self.accelerator.gather,
            )
            for name, value in report.metrics().items():
                self._metrics["train"][name].append(value)
            return output

        def _draw_groups(self, count: int) -> list[dict]:
            """``count`` random prompts of the training set, each repeated G times."""
            if self._refill_rng is None:
                self._refill_rng = random.Random(
                    self.args.seed * 1_000_003 + self.accelerator.process_index
                )
            dataset: Any = self.train_dataset  # a map-style Dataset: the trainer's own
            picks = [self._refill_rng.randrange(len(dataset)) for _ in range(count)]
            repeats = cast(int, self.num_generations)
            return [dict(dataset[i]) for i in picks for _ in range(repeats)]

    return DynamicSamplingGRPOTrainer


def make_trainer(
    config: TrainConfig,
    callbacks: list | None = None,
    *,
    answer_reward: Callable | None = None,
    hardware: Hardware | None = None,
):
    """The configured ``DynamicSamplingGRPOTrainer`` (imports torch and TRL on call).
    ``answer_reward`` replaces ``AnswerReward`` (the GPU smoke test's reward needs no
    math-verify)."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig
    from trl.rewards import get_soft_overlong_punishment

    hardware = hardware or Hardware.detect()
    settings = resolve_hardware_settings(config, hardware)
    args = GRPOConfig(**grpo_arguments(config, hardware))
    reward_funcs: list = [answer_reward or AnswerReward(config.verify_timeout_s)]
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
    # Full fine-tuning keeps float32 master weights (mixed precision computes in `dtype`; at
    # the paper's learning rate of 1e-6 bf16 weights would round most updates away); the frozen
    # base of a LoRA adapter loads in `dtype` itself.
    load_dtype = getattr(torch, settings.dtype) if config.lora is not None else torch.float32
    trainer = trainer_class()(
        # Loaded here, not by name: a converted checkpoint may lack `architectures` in its config.
        model=AutoModelForCausalLM.from_pretrained(model_path, dtype=load_dtype),
        processing_class=AutoTokenizer.from_pretrained(model_path),
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        peft_config=peft_config,
        callbacks=callbacks or [],
    )
    trainer.max_refill_rounds = config.max_refill_rounds
    trainer.a2r_settings = settings
    return trainer


def train(
    config: TrainConfig,
    *,
    answer_reward: Callable | None = None,
    hardware: Hardware | None = None,
) -> Path:
    """Train, log metrics to ``output_dir/metrics.jsonl`` (the settings resolved for the
    hardware to ``train_settings.json``), save the checkpoint (full weights in the training
    dtype, or the LoRA adapter) with its tokenizer to ``output_dir``; return that directory."""
    from transformers import TrainerCallback

    config.output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = config.output_dir / "metrics.jsonl"

    class MetricsLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero:
                with metrics_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    hardware = hardware or Hardware.detect()
    trainer = make_trainer(
        config, callbacks=[MetricsLog()], answer_reward=answer_reward, hardware=hardware
    )
    settings = trainer.a2r_settings
    if trainer.is_world_process_zero():
        resolved = {
            "hardware": asdict(hardware),
            "resolved": asdict(settings),
            "num_processes": trainer.accelerator.num_processes,
            "grpo_config": grpo_arguments(config, hardware),
        }
        (config.output_dir / "train_settings.json").write_text(json.dumps(resolved, indent=2))
        generation = f"vLLM ({config.vllm_mode})" if settings.use_vllm else "transformers"
        print(
            f"train-synthesizer: {settings.dtype} on {trainer.args.device}, "
            f"{trainer.accelerator.num_processes} process(es), gradient checkpointing "
            f"{'on' if settings.gradient_checkpointing else 'off'}, generation with {generation}",
            file=sys.stderr,
        )
    try:
        trainer.train()
    finally:
        for reward in trainer.reward_funcs:
            if isinstance(reward, AnswerReward):
                reward.verifier.close()
    sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
    if config.lora is None and settings.dtype != "float32" and not sharded:
        import torch

        # float32 master weights -> the checkpoint in the training dtype (DeepSpeed saves its
        # 16-bit weights itself).
        trainer.model.to(getattr(torch, settings.dtype))
    trainer.save_model(str(config.output_dir))
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(config.output_dir))
    return config.output_dir
