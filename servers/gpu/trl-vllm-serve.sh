#!/usr/bin/env bash
# Rollout server for `a2r train-synthesizer` in vLLM server mode (TRL's `trl vllm-serve`): vLLM
# generates the GRPO rollouts on GPUs of its own, and the trainer pushes its new weights to it
# over NCCL after every optimizer step (so it serves the policy being trained, not a fixed model).
#
#   CUDA_VISIBLE_DEVICES=0 servers/gpu/trl-vllm-serve.sh [EXTRA_TRL_VLLM_SERVE_ARGS...]
#   # then, on the other GPUs, with `use_vllm: true`, `vllm_mode: server` and
#   # `vllm_server_base_url: http://127.0.0.1:8000` in train.yaml:
#   CUDA_VISIBLE_DEVICES=1,2,3,4 accelerate launch --config_file examples/accelerate/zero2.yaml \
#       --num_processes 4 -m a2r_graph.train --config train.yaml
#
# Environment overrides (defaults in brackets):
#   TRL_VLLM_MODEL          the model being trained: train.yaml's `model`   [Qwen/Qwen3-8B]
#   TRL_VLLM_HOST           bind address (0.0.0.0 when trainers run on other hosts) [127.0.0.1]
#   TRL_VLLM_PORT           port (the trainer also opens an NCCL group on 51216) [8000]
#   TRL_VLLM_TP             --tensor-parallel-size (GPUs of this server)    [1]
#   TRL_VLLM_GPU_MEM        --gpu-memory-utilization (0-1)                  [0.90]
#   TRL_VLLM_MAX_MODEL_LEN  --max-model-len: prompt + max_completion_length [16384]
#   TRL                     trl executable (pip install 'trl[vllm]')        [trl]
# TRL 1.16 marks `trl vllm-serve` deprecated: it runs vLLM's own server with the flags its trainer
# needs (weight transfer over NCCL, processed logprobs) and prints that `vllm serve` command.
set -euo pipefail

model="${TRL_VLLM_MODEL:-Qwen/Qwen3-8B}"
host="${TRL_VLLM_HOST:-127.0.0.1}"
port="${TRL_VLLM_PORT:-8000}"
tp="${TRL_VLLM_TP:-1}"
gpu_mem="${TRL_VLLM_GPU_MEM:-0.90}"
max_len="${TRL_VLLM_MAX_MODEL_LEN:-16384}"

if [[ "${model}" == /* || "${model}" == .* ]] && [[ ! -f "${model}/config.json" ]]; then
  echo "trl-vllm-serve: ${model} is not a model directory (no config.json)" >&2
  exit 2
fi

echo "trl vllm-serve: ${model} on http://${host}:${port} (tensor-parallel ${tp}," \
  "gpu-memory-utilization ${gpu_mem}, max-model-len ${max_len})" >&2

exec "${TRL:-trl}" vllm-serve \
  --model "${model}" \
  --host "${host}" \
  --port "${port}" \
  --tensor-parallel-size "${tp}" \
  --gpu-memory-utilization "${gpu_mem}" \
  --max-model-len "${max_len}" \
  --enable-prefix-caching true \
  "$@"
