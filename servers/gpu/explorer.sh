#!/usr/bin/env bash
# A2R explorer server: Qwen/Qwen3-4B behind vLLM's OpenAI-compatible API (GPU).
#
#   CUDA_VISIBLE_DEVICES=0 servers/gpu/explorer.sh [EXTRA_VLLM_ARGS...]
#
# Environment overrides (defaults in brackets):
#   EXPLORER_MODEL          HF id or local dir                 [Qwen/Qwen3-4B]
#   EXPLORER_SERVED_NAME    name clients send as "model"       [Qwen3-4B]
#   EXPLORER_HOST           bind address                       [127.0.0.1]
#   EXPLORER_PORT           port                               [8001]
#   EXPLORER_GPU_MEM        --gpu-memory-utilization (0-1)     [0.90]
#   EXPLORER_MAX_MODEL_LEN  --max-model-len                    [32768]
#   VLLM                    vllm executable                    [vllm]
# Point a2r-graph at it with:
#   export A2R_EXPLORER__BASE_URL=http://127.0.0.1:8001/v1 A2R_EXPLORER__MODEL=Qwen3-4B
set -euo pipefail

model="${EXPLORER_MODEL:-Qwen/Qwen3-4B}"
served_name="${EXPLORER_SERVED_NAME:-Qwen3-4B}"
host="${EXPLORER_HOST:-127.0.0.1}"
port="${EXPLORER_PORT:-8001}"
gpu_mem="${EXPLORER_GPU_MEM:-0.90}"
max_len="${EXPLORER_MAX_MODEL_LEN:-32768}"

exec "$(dirname "$0")/vllm-serve.sh" explorer "${model}" "${served_name}" "${host}" "${port}" \
  "${gpu_mem}" "${max_len}" "$@"
