"""GPU smoke test of the whole training path, in minutes, with nothing downloaded::

    python -m a2r_graph.train.smoke                # on a GPU: bf16, gradient checkpointing
    python -m a2r_graph.train.smoke --device cpu   # the same, tiny, on a CPU
    python -m a2r_graph.train.smoke --lora         # a LoRA adapter instead of full weights

It builds a small Qwen2-style model with random weights and a byte-level BPE tokenizer on the
spot, curates a training file from synthetic explorer samples (``a2r curate``'s format and
prompt), runs a few GRPO steps of ``a2r train-synthesizer`` (``TrainConfig`` with its hardware
defaults, DAPO loss, dynamic sampling with refill, micro-batches), saves the checkpoint, checks
that the steps changed its weights, reloads it and generates from it, then prints the figures:
step time, peak GPU memory, the dtype of the saved weights, and what dynamic sampling did.
The reward is a stand-in (a hash of the completion: random models rarely box the right answer)
so that it needs no math-verify; the soft overlong penalty is the real one. Exit status 0 when
every check passed.

Needs torch, transformers, accelerate, peft (for ``--lora``), TRL and datasets, pydantic and
pyyaml; not LangGraph, LangChain, OpenAI or math-verify (``scripts/gpu_smoke_wheels.txt``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from a2r_graph.answers import last_boxed
from a2r_graph.eval.results import ResultLine, SavedPath, Usage

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


CHECKPOINTING: dict[str, str | bool] = {"auto": "auto", "on": True, "off": False}


def build_tokenizer(directory: Path, corpus: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on ``corpus`` with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(directory))
    return fast


def build_model(directory: Path, tokenizer: Any, hidden_size: int, layers: int, seed: int):
    """A Qwen2-style causal LM with random weights, saved in bfloat16 like real checkpoints."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    heads = max(2, hidden_size // 64)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # transformers types PreTrainedModel.to for models only; torch's Module.to takes a dtype
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)  # type: ignore[arg-type]
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(str(directory))
    return sum(p.numel() for p in model.parameters())


def synthetic_results(queries: int) -> list[ResultLine]:
    """``a2r eval`` result lines: per query, explorer answers, some right and some wrong."""
    lines = []
    no_usage = Usage(input_tokens=0, output_tokens=0, cost=0.0)
    for q in range(queries):
        gold = str(q + 7)
        answers = [
            (f"Adding the terms step by step gives \\boxed{{{gold}}}.", True),
            (f"Carrying the one wrongly: \\boxed{{{q + 3}}}.", False),
            (f"So the sum is \\boxed{{{gold}}}.", True),
            (f"The product, not the sum: \\boxed{{{q * 2 + 1}}}.", False),
        ]
        lines.append(
            ResultLine(
                key=f"q{q}#0",
                id=f"q{q}",
                repetition=0,
                problem=f"What is {q} + 7? Show the steps.",
                gold=gold,
                k=len(answers),
                thread_id=f"smoke/q{q}/0",
                paths=[
                    SavedPath(
                        index=i,
                        boxed=last_boxed(a),
                        answer=a,
                        error=None,
                        usage=no_usage,
                        correct=ok,
                    )
                    for i, (a, ok) in enumerate(answers)
                ],
                by_n={},
            )
        )
    return lines


def stand_in_reward(prompts: list, completions: list, **_: Any) -> list[float]:
    """1.0 for about a quarter of the completions, by a hash of their text: a random model's
    groups then often differ (learning signal) and often do not (dynamic sampling's work)."""
    texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
    return [float(zlib.crc32(text.encode()) % 4 == 0) for text in texts]


stand_in_reward.__name__ = "stand_in_reward"


def changed_weights(initial: Path, saved: Path, lora: bool) -> list[str]:
    """The saved tensors that training changed: those that differ from the initial model's
    (a LoRA adapter's, which start at zero: those that are not zero)."""
    import torch
    from safetensors.torch import load_file

    trained = load_file(str(saved))
    if lora:
        return sorted(name for name, tensor in trained.items() if "lora_B" in name and tensor.any())
    start = load_file(str(initial))
    return sorted(
        name
        for name, tensor in trained.items()
        if not torch.equal(tensor.float(), start[name].float())
    )


def run(
    *,
    device: str = "auto",
    steps: int = 3,
    out: Path | None = None,
    hidden_size: int | None = None,
    layers: int | None = None,
    completion_length: int | None = None,
    num_generations: int = 4,
    prompts_per_step: int = 4,
    micro_batch_size: int | None = 8,
    max_refill_rounds: int = 2,
    lora: bool = False,
    dtype: str = "auto",
    gradient_checkpointing: str | bool = "auto",
    reward: Any = stand_in_reward,
    learning_rate: float = 1e-5,
) -> dict[str, Any]:
    """Train, save, reload, generate; return the figures, also written to
    ``out/figures.json`` (raises AssertionError on a failed check)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU found")
    cuda = device == "cuda"
    hidden_size = hidden_size or (1024 if cuda else 64)
    layers = layers or (12 if cuda else 2)
    completion_length = completion_length or (256 if cuda else 24)

    from a2r_graph.train.curate import example_statistics, pool_queries, training_examples
    from a2r_graph.train.grpo import Hardware, TrainConfig, resolve_hardware_settings, train

    work = Path(out or tempfile.mkdtemp(prefix="a2r-gpu-smoke-"))
    model_dir, checkpoint = work / "tiny-model", work / "ckpt"
    examples = training_examples(pool_queries(synthetic_results(12)), n=2, per_query=2, seed=0)
    train_file = work / "train.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    train_file.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    corpus = [e["prompt"][0]["content"] for e in examples] * 4
    tokenizer = build_tokenizer(model_dir, corpus)
    parameters = build_model(model_dir, tokenizer, hidden_size, layers, seed=0)

    config = TrainConfig(
        model=str(model_dir),
        train_file=train_file,
        output_dir=checkpoint,
        num_generations=num_generations,
        prompts_per_step=prompts_per_step,
        micro_batch_size=micro_batch_size,
        max_steps=steps,
        learning_rate=learning_rate,
        max_completion_length=completion_length,
        overlong_buffer=completion_length // 4,
        max_refill_rounds=max_refill_rounds,
        lora={"r": 8, "alpha": 16} if lora else None,
        use_vllm=False,  # vLLM is not part of the smoke test (see README for use_vllm)
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
    )
    hardware = Hardware.detect() if cuda else Hardware()  # --device cpu on a GPU machine too
    wanted = resolve_hardware_settings(config, hardware)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train(config, answer_reward=reward, hardware=hardware)
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() if cuda else None

    settings = json.loads((checkpoint / "train_settings.json").read_text())["resolved"]
    assert settings["gradient_checkpointing"] == wanted.gradient_checkpointing, settings
    assert settings["dtype"] == wanted.dtype, settings
    if cuda and dtype == "auto":  # what a GPU user gets without setting anything
        assert settings["dtype"] == ("bfloat16" if hardware.bf16 else "float32"), settings
        assert settings["gradient_checkpointing"] is True, settings
    lines = (checkpoint / "metrics.jsonl").read_text().splitlines()
    logged = [step for step in map(json.loads, lines) if "reward" in step]
    assert [s["step"] for s in logged] == list(range(1, steps + 1)), logged
    for step in logged:
        assert step["dynamic_sampling/groups_kept"] + step["dynamic_sampling/groups_short"] == (
            prompts_per_step
        ), step
        assert step["dynamic_sampling/rounds"] <= max_refill_rounds, step
        assert not any(math.isnan(v) for v in step.values() if isinstance(v, float)), step

    saved = checkpoint / ("adapter_model.safetensors" if lora else "model.safetensors")
    assert saved.is_file(), sorted(p.name for p in checkpoint.iterdir())
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as weights:
        dtypes = sorted({str(weights.get_slice(k).get_dtype()) for k in weights.keys()})  # noqa: SIM118
    expected = {"bfloat16": "BF16", "float32": "F32", "float16": "F16"}[settings["dtype"]]
    if not lora:
        assert dtypes == [expected], (dtypes, expected)
    changed = changed_weights(model_dir / "model.safetensors", saved, lora)
    assert changed, "training left every weight as it was"

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if lora:
        from peft import AutoPeftModelForCausalLM

        reloaded = AutoPeftModelForCausalLM.from_pretrained(str(checkpoint))
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype="auto")
    reloaded = reloaded.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    prompt: Any = tokenizer.apply_chat_template(  # a BatchEncoding, with return_dict
        examples[0]["prompt"], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt = prompt.to(device)
    with torch.no_grad():
        generated = reloaded.generate(
            **prompt, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    new_tokens = generated.shape[1] - prompt["input_ids"].shape[1]
    assert new_tokens >= 1, generated.shape

    step_times = [s["step_time"] for s in logged]
    figures = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "model_parameters": parameters,
        "lora": lora,
        "settings": {
            **settings,
            "groups_per_step": prompts_per_step,
            "num_generations": num_generations,
            "micro_batch_size": micro_batch_size,
            "max_completion_length": completion_length,
        },
        "steps": steps,
        "step_time_s": step_times,
        "step_time_s_median_after_first": (
            statistics.median(step_times[1:]) if len(step_times) > 1 else step_times[0]
        ),
        "train_wall_s": round(wall, 2),
        "peak_gpu_memory_gib": round(peak / 2**30, 3) if peak is not None else None,
        "saved_weights": saved.name,
        "saved_weight_dtypes": dtypes,
        "changed_weights": changed,
        "generated_tokens_after_reload": int(new_tokens),
        "dynamic_sampling": [
            {k.split("/", 1)[1]: s[k] for k in s if k.startswith("dynamic_sampling/")}
            for s in logged
        ],
        "curated": example_statistics(examples, examples, None)["examples"],
        "checkpoint": str(checkpoint),
    }
    (work / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m a2r_graph.train.smoke", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, help="work directory, figures.json in it (default: a temporary one)"
    )
    parser.add_argument("--hidden-size", type=int, help="default: 1024 on a GPU, 64 on a CPU")
    parser.add_argument("--layers", type=int, help="default: 12 on a GPU, 2 on a CPU")
    parser.add_argument("--completion-length", type=int, help="default: 256 on a GPU, 24 on CPU")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter")
    parser.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto"
    )
    parser.add_argument("--gradient-checkpointing", choices=CHECKPOINTING, default="auto")
    args = parser.parse_args(argv)
    figures = run(
        device=args.device,
        steps=args.steps,
        out=args.out,
        hidden_size=args.hidden_size,
        layers=args.layers,
        completion_length=args.completion_length,
        lora=args.lora,
        dtype=args.dtype,
        gradient_checkpointing=CHECKPOINTING[args.gradient_checkpointing],
    )
    print(json.dumps(figures, indent=2))
    memory = figures["peak_gpu_memory_gib"]
    print(
        f"gpu smoke OK on {figures['device']}: {figures['steps']} GRPO steps, median step "
        f"{figures['step_time_s_median_after_first']:.2f} s, peak GPU memory "
        f"{'n/a' if memory is None else f'{memory:.2f} GiB'}, saved weights "
        f"{','.join(figures['saved_weight_dtypes'])} ({figures['saved_weights']})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
