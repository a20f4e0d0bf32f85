"""What `TrainConfig` sends to TRL's `GRPOConfig` on the hardware found (issue #18), the
multi-GPU launch files, and the training path's imports (no graph)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

pytest.importorskip("yaml", reason="pyyaml (pip install 'a2r-graph[train]')")

from a2r_graph.train.grpo import (
    Hardware,
    TrainConfig,
    grpo_arguments,
    resolve_hardware_settings,
)

ROOT = Path(__file__).resolve().parents[3]
CPU = Hardware()
GPU = Hardware(cuda=True, bf16=True)
GPU_VLLM = Hardware(cuda=True, bf16=True, vllm=True)
OLD_GPU = Hardware(cuda=True, bf16=False, vllm=True)


def config(**fields) -> TrainConfig:
    return TrainConfig(model="m", train_file="t.jsonl", output_dir="out", **fields)


def test_auto_settings_follow_the_hardware():
    cpu = grpo_arguments(config(), CPU)
    assert (cpu["bf16"], cpu["fp16"], cpu["gradient_checkpointing"], cpu["use_vllm"]) == (
        False, False, False, False,
    )  # fmt: skip
    assert cpu["use_cpu"] is True and "vllm_mode" not in cpu
    gpu = grpo_arguments(config(), GPU)  # no vllm installed: transformers generation
    assert (gpu["bf16"], gpu["fp16"], gpu["gradient_checkpointing"], gpu["use_vllm"]) == (
        True, False, True, False,
    )  # fmt: skip
    assert gpu["use_cpu"] is False
    with_vllm = grpo_arguments(config(), GPU_VLLM)
    assert with_vllm["use_vllm"] is True and with_vllm["vllm_mode"] == "colocate"
    assert (with_vllm["vllm_gpu_memory_utilization"], with_vllm["vllm_tensor_parallel_size"]) == (
        0.3, 1,
    )  # fmt: skip
    old = grpo_arguments(config(), OLD_GPU)  # no bf16: float32 unless told float16
    assert (old["bf16"], old["fp16"]) == (False, False)
    assert grpo_arguments(config(dtype="float16"), OLD_GPU)["fp16"] is True


def test_explicit_settings_override_auto_and_impossible_ones_are_refused():
    pinned = grpo_arguments(
        config(dtype="float32", gradient_checkpointing=False, use_vllm=False), GPU_VLLM
    )
    assert (pinned["bf16"], pinned["gradient_checkpointing"], pinned["use_vllm"]) == (
        False, False, False,
    )  # fmt: skip
    cpu_bf16 = resolve_hardware_settings(config(dtype="bfloat16", gradient_checkpointing=True), CPU)
    assert (cpu_bf16.dtype, cpu_bf16.gradient_checkpointing) == ("bfloat16", True)
    for fields, hardware, message in [
        ({"dtype": "float16"}, CPU, "float16 needs a CUDA GPU"),
        ({"dtype": "bfloat16"}, OLD_GPU, "no bfloat16 support"),
        ({"use_vllm": True}, CPU, "use_vllm needs a CUDA GPU and vllm installed"),
        ({"use_vllm": True}, GPU, "use_vllm needs a CUDA GPU and vllm installed"),
    ]:
        with pytest.raises(ValueError, match=message):
            grpo_arguments(config(**fields), hardware)


def test_vllm_modes_send_their_own_settings():
    colocate = grpo_arguments(
        config(
            use_vllm=True,
            vllm_gpu_memory_utilization=0.45,
            vllm_tensor_parallel_size=2,
            vllm_max_model_length=12288,
            vllm_enable_sleep_mode=True,
        ),
        GPU_VLLM,
    )
    assert {k: v for k, v in colocate.items() if k.startswith("vllm")} == {
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.45,
        "vllm_tensor_parallel_size": 2,
        "vllm_max_model_length": 12288,
        "vllm_enable_sleep_mode": True,
    }
    server = grpo_arguments(
        config(use_vllm=True, vllm_mode="server", vllm_server_base_url="http://10.0.0.2:8000"),
        GPU_VLLM,
    )
    assert {k: v for k, v in server.items() if k.startswith("vllm")} == {
        "vllm_mode": "server",
        "vllm_server_base_url": "http://10.0.0.2:8000",
    }


def test_the_paper_recipe_and_micro_batches_stay_on_policy():
    one = grpo_arguments(config(num_generations=8, prompts_per_step=4), CPU)
    assert {k: one[k] for k in ("loss_type", "epsilon", "epsilon_high", "beta")} == {
        "loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.2, "beta": 0.0,
    }  # fmt: skip
    assert (one["per_device_train_batch_size"], one["gradient_accumulation_steps"]) == (32, 1)
    assert (one["steps_per_generation"], one["num_iterations"]) == (1, 1)
    split = grpo_arguments(config(num_generations=8, prompts_per_step=4, micro_batch_size=4), CPU)
    # one generation batch of 32 rollouts, 8 micro-batches of 4, one optimizer step
    assert (split["per_device_train_batch_size"], split["gradient_accumulation_steps"]) == (4, 8)
    assert split["steps_per_generation"] == 8 and split["num_iterations"] == 1
    saving = grpo_arguments(config(save_steps=50), CPU)
    assert (saving["save_strategy"], saving["save_steps"]) == ("steps", 50)
    assert grpo_arguments(config(), CPU)["save_strategy"] == "no"
    with pytest.raises(ValidationError, match="micro_batch_size must divide"):
        config(num_generations=8, prompts_per_step=4, micro_batch_size=5)
    with pytest.raises(ValidationError, match="dtype"):
        config(dtype="int8")
    with pytest.raises(ValidationError, match="vllm_mode"):
        config(vllm_mode="remote")


def test_what_reaches_grpo_config():
    trl = pytest.importorskip("trl", reason="trl (pip install 'a2r-graph[train]')")
    names = {f.name for f in dataclasses.fields(trl.GRPOConfig)}
    gpu = grpo_arguments(
        config(use_vllm=True, micro_batch_size=8, save_steps=10, vllm_max_model_length=4096),
        GPU_VLLM,
    )
    server = grpo_arguments(
        config(use_vllm=True, vllm_mode="server", vllm_server_base_url="http://h:1"), GPU_VLLM
    )
    assert set(gpu) | set(server) <= names  # every setting is a GRPOConfig field
    args = trl.GRPOConfig(
        **grpo_arguments(config(num_generations=4, prompts_per_step=2, micro_batch_size=4), CPU)
    )  # a GPU's cannot be built on a CPU (bf16 needs the GPU); the CPU's can
    assert (args.bf16, args.fp16, args.gradient_checkpointing, args.use_vllm) == (
        False, False, False, False,
    )  # fmt: skip
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 2)
    assert (args.steps_per_generation, args.generation_batch_size) == (2, 8)
    assert (args.loss_type, args.epsilon_high, args.beta, args.num_generations) == (
        "dapo", 0.2, 0.0, 4,
    )  # fmt: skip


def test_accelerate_launch_configs_parse():
    pytest.importorskip("accelerate", reason="accelerate (pip install 'a2r-graph[train]')")
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for path in sorted((ROOT / "examples" / "accelerate").glob("*.yaml")):
        loaded = load_config_from_file(str(path))
        assert loaded.mixed_precision == "bf16", path.name
        kinds[path.stem] = str(loaded.distributed_type)
    assert kinds == {
        "fsdp2": "DistributedType.FSDP",
        "zero2": "DistributedType.DEEPSPEED",
        "zero3": "DistributedType.DEEPSPEED",
    }


def test_the_training_path_imports_no_graph():
    """`python -m a2r_graph.train` and the GPU smoke test run where LangGraph, LangChain,
    OpenAI and math-verify are not installed."""
    poisoned = ["langgraph", "langchain", "langchain_core", "langchain_openai", "openai",
                "math_verify", "httpx"]  # fmt: skip
    code = (
        "import sys\n"
        f"for name in {poisoned!r}: sys.modules[name] = None\n"
        "import a2r_graph, a2r_graph.train.grpo, a2r_graph.train.curate\n"
        "import a2r_graph.train.smoke, a2r_graph.train.__main__\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def test_the_package_still_exports_its_public_names():
    import a2r_graph

    for name in a2r_graph.__all__:
        assert getattr(a2r_graph, name) is not None
    import a2r_graph.graph  # binding the submodule keeps `graph` the compiled graph

    assert type(a2r_graph.graph).__name__ == "CompiledStateGraph"
    from a2r_graph import graph, threads

    assert graph is a2r_graph.graph and threads.__name__ == "a2r_graph.threads"


def test_python_m_train_reports_config_errors():
    bad = subprocess.run(
        [sys.executable, "-m", "a2r_graph.train", "--config", "/nonexistent.yaml"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "no such config file" in bad.stderr


def test_trl_vllm_serve_recipe(tmp_path):
    script = ROOT / "servers" / "gpu" / "trl-vllm-serve.sh"
    env = os.environ | {"TRL": "echo", "TRL_VLLM_MODEL": "Qwen/Qwen3-8B", "TRL_VLLM_TP": "2"}
    done = subprocess.run(
        [str(script), "--dtype", "bfloat16"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "vllm-serve", "--model", "Qwen/Qwen3-8B", "--host", "127.0.0.1", "--port", "8000",
        "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.90",
        "--max-model-len", "16384", "--enable-prefix-caching", "true", "--dtype", "bfloat16",
    ]  # fmt: skip
    missing = subprocess.run(
        [str(script)], capture_output=True, text=True, check=False,
        env=env | {"TRL_VLLM_MODEL": str(tmp_path / "nope")},
    )  # fmt: skip
    assert missing.returncode == 2 and "not a model directory" in missing.stderr
    trl_scripts = pytest.importorskip("trl.scripts.vllm_serve", reason="trl")
    from trl import TrlParser

    parsed, rest = TrlParser(trl_scripts.ScriptArguments).parse_args_and_config(
        done.stdout.split()[1:], return_remaining_strings=True
    )
    assert rest == [] and (parsed.tensor_parallel_size, parsed.max_model_len) == (2, 16384)
    assert parsed.enable_prefix_caching is True and parsed.dtype == "bfloat16"
    json.dumps(dataclasses.asdict(parsed))


def test_example_configs_validate():
    paths = sorted((ROOT / "examples").glob("train-*.yaml"))
    assert {p.name for p in paths} >= {"train-tiny.yaml", "train-gpu.yaml", "train-gpu-8x.yaml"}
    for path in paths:
        loaded = TrainConfig.from_yaml(path)
        gpu = grpo_arguments(loaded, GPU_VLLM)
        assert gpu["bf16"] and gpu["gradient_checkpointing"] and gpu["use_vllm"], path.name
        assert not grpo_arguments(loaded, CPU)["use_vllm"]
