#!/usr/bin/env bash
# Runs inside `python -m servers.embedded exec --explorer qwen2.5-coder-0.5b
#   --synthesizer qwen2.5-coder-1.5b --engine llamacpp -- bash docs/results/r2r-dev/run.sh SIZE`
# (A2R_EXPLORER__* = the 0.5B SLM server, A2R_SYNTHESIZER__* = the 1.5B LLM server, each pinned
# to its own core). All configurations run side by side, one problem at a time each (CONC=1: four
# evals, four streams per server, its four slots, so no slot loses its cached prefix).
set -u
SIZE=${1:-5}
PY=${PY:-/work/main/.venv/bin/python}
OUT=docs/results/r2r-dev
export A2R_EXPLORER__TEMPERATURE=0 A2R_SYNTHESIZER__TEMPERATURE=0   # greedy, both models
export A2R_EXPLORER__INPUT_PRICE_PER_MTOK=0.05 A2R_EXPLORER__OUTPUT_PRICE_PER_MTOK=0.10
export A2R_SYNTHESIZER__INPUT_PRICE_PER_MTOK=0.15 A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK=0.30
export A2R_R2R__SLM_CACHED_INPUT_PRICE_PER_MTOK=0.005 A2R_R2R__LLM_CACHED_INPUT_PRICE_PER_MTOK=0.015
export A2R_R2R__TOP_K=10 A2R_R2R__MAX_TOKENS=512
run() {  # name router threshold tokens_per_switch
  A2R_R2R__ROUTER=$2 A2R_R2R__THRESHOLD=$3 A2R_R2R__LLM_TOKENS_PER_SWITCH=$4 \
    "$PY" -m a2r_graph.serving.cli eval builtin:gsm_symbolic,number_sequence --data-seed 1 \
    --size "$SIZE" --concurrency "${CONC:-1}" --graph r2r --db "${DBDIR:-/tmp/r2rdev}/$1.sqlite" --out "$OUT/$1" \
    > "${DBDIR:-/tmp/r2rdev}/$1.log" 2>&1
  echo "$1 done rc=$?"
}
# SLM alone: an entropy no token reaches. LLM alone: top1 < 2 flags every SLM token, and the
# LLM then writes 256 tokens a switch (the most allowed), so it writes (nearly) everything.
run slm-alone entropy 100 1 &
run llm-alone top1 2 256 &
for t in ${THRESHOLDS:-0.5 1.0}; do run "entropy-$t" entropy "$t" 1 & done
wait
