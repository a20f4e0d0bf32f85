#!/usr/bin/env bash
# The explorer stage scaled out: one explorer replica per GPU (servers/gpu/explorer.sh) behind
# vllm-router with consistent hashing on X-Session-ID, the header a2r-graph sends with each
# run's session id: a run's N explorers share one replica's prefix cache, runs spread.
#
#   REPLICAS=4 servers/gpu/explorer-replicas.sh
#
# Environment overrides (defaults in brackets):
#   REPLICAS        replicas, one per GPU 0..REPLICAS-1         [2]
#   FIRST_PORT      first replica's port (then +1, +2, ...)     [8101]
#   ROUTER_PORT     the router's port                           [8001]
#   VLLM_ROUTER     vllm-router executable (pip install vllm-router==0.1.17)   [vllm-router]
# and explorer.sh's (EXPLORER_MODEL, EXPLORER_SERVED_NAME, ...). Then:
#   export A2R_EXPLORER__BASE_URL=http://127.0.0.1:8001/v1 A2R_EXPLORER__MODEL=Qwen3-4B
# vLLM's own data parallelism is the alternative on one node (one API server, internal
# load balancing, no session affinity):
#   servers/gpu/explorer.sh --data-parallel-size 2
set -euo pipefail

here="$(dirname "$0")"
replicas="${REPLICAS:-2}"
first_port="${FIRST_PORT:-8101}"
router_port="${ROUTER_PORT:-8001}"
workers=()
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for ((i = 0; i < replicas; i++)); do
  port=$((first_port + i))
  CUDA_VISIBLE_DEVICES="$i" EXPLORER_PORT="$port" "$here/explorer.sh" &
  pids+=("$!")
  workers+=("http://127.0.0.1:$port")
done
for worker in "${workers[@]}"; do "$here/wait-healthy.sh" "$worker"; done
"${VLLM_ROUTER:-vllm-router}" --host 127.0.0.1 --port "$router_port" \
  --policy consistent_hash --worker-urls "${workers[@]}"
