#!/usr/bin/env bash
# A2R synthesizer server: Qwen/Qwen3-8B (or an RL-trained checkpoint dir) behind vLLM (GPU).
#
#   CUDA_VISIBLE_DEVICES=1 servers/gpu/synthesizer.sh [EXTRA_VLLM_ARGS...]
#   SYNTHESIZER_MODEL=/ckpt/a2r-synth-rl SYNTHESIZER_SERVED_NAME=a2r-synth servers/gpu/synthesizer.sh
#
# Environment overrides (defaults in brackets):
#   SYNTHESIZER_MODEL          HF id or local checkpoint dir      [Qwen/Qwen3-8B]
#   SYNTHESIZER_SERVED_NAME    name clients send as "model"       [Qwen3-8B]
#   SYNTHESIZER_HOST           bind address                       [127.0.0.1]
#   SYNTHESIZER_PORT           port                               [8002]
#   SYNTHESIZER_GPU_MEM        --gpu-memory-utilization (0-1)     [0.90]
#   SYNTHESIZER_MAX_MODEL_LEN  --max-model-len                    [32768]
#   SYNTHESIZER_LORA           a LoRA adapter dir from `a2r train-synthesizer` (lora: in its
#                              config), served on the base model as "a2r-synth"     [none]
#   SYNTHESIZER_LORA_RANK      --max-lora-rank, at least the adapter's r             [64]
#   VLLM                       vllm executable                    [vllm]
# Point a2r-graph at it with:
#   export A2R_SYNTHESIZER__BASE_URL=http://127.0.0.1:8002/v1 A2R_SYNTHESIZER__MODEL=Qwen3-8B
#   (with SYNTHESIZER_LORA: A2R_SYNTHESIZER__MODEL=a2r-synth)
set -euo pipefail

model="${SYNTHESIZER_MODEL:-Qwen/Qwen3-8B}"
served_name="${SYNTHESIZER_SERVED_NAME:-Qwen3-8B}"
host="${SYNTHESIZER_HOST:-127.0.0.1}"
port="${SYNTHESIZER_PORT:-8002}"
gpu_mem="${SYNTHESIZER_GPU_MEM:-0.90}"
max_len="${SYNTHESIZER_MAX_MODEL_LEN:-32768}"

if [[ "${model}" == /* || "${model}" == .* ]] && [[ ! -f "${model}/config.json" ]]; then
  echo "synthesizer: ${model} is not a model directory (no config.json)" >&2
  exit 2
fi

lora_args=()
if [[ -n "${SYNTHESIZER_LORA:-}" ]]; then
  if [[ ! -f "${SYNTHESIZER_LORA}/adapter_config.json" ]]; then
    echo "synthesizer: ${SYNTHESIZER_LORA} is not a LoRA adapter (no adapter_config.json)" >&2
    exit 2
  fi
  lora_args=(--enable-lora --lora-modules "a2r-synth=${SYNTHESIZER_LORA}"
    --max-lora-rank "${SYNTHESIZER_LORA_RANK:-64}")
fi

exec "$(dirname "$0")/vllm-serve.sh" synthesizer "${model}" "${served_name}" "${host}" "${port}" \
  "${gpu_mem}" "${max_len}" "${lora_args[@]}" "$@"
