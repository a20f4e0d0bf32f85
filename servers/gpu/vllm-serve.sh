#!/usr/bin/env bash
# The vllm serve command both A2R roles use (called by explorer.sh and synthesizer.sh).
#
#   servers/gpu/vllm-serve.sh ROLE MODEL SERVED_NAME HOST PORT GPU_MEM MAX_LEN [EXTRA_VLLM_ARGS...]
set -euo pipefail

role="$1" model="$2" served_name="$3" host="$4" port="$5" gpu_mem="$6" max_len="$7"
shift 7

echo "${role}: ${model} as '${served_name}' on http://${host}:${port}/v1" \
  "(gpu-memory-utilization ${gpu_mem}, max-model-len ${max_len})" >&2

exec "${VLLM:-vllm}" serve "${model}" \
  --served-model-name "${served_name}" \
  --host "${host}" \
  --port "${port}" \
  --max-model-len "${max_len}" \
  --gpu-memory-utilization "${gpu_mem}" \
  --enable-prefix-caching \
  --reasoning-parser qwen3 \
  "$@"
