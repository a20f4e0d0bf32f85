#!/usr/bin/env bash
# The R2R goal run (issue #28), from the repository root:
#   nice -n 5 python -m servers.embedded exec --explorer qwen2.5-coder-0.5b \
#     --synthesizer qwen2.5-coder-1.5b --engine llamacpp -- bash docs/results/r2r-heldout/run.sh
# A2R_EXPLORER__* is the 0.5B SLM's llama.cpp server, A2R_SYNTHESIZER__* the 1.5B LLM's.
# 1. `a2r train-router` on development questions (data seed 1) -> docs/results/r2r-router/
# 2. on held-out questions (data seed 2, SIZE per generator), side by side, one problem at a
#    time each, the same greedy sampling for all: the 1.5B alone, entropy at the threshold the
#    dev sweep chose (docs/results/r2r-dev), and the trained linear router.
# Resumable: rerun the same command; finished problems are kept (--db, results.jsonl).
# Clean wall times: SEQUENTIAL=1 runs one configuration at a time, e.g. SIZE=5 SEQUENTIAL=1
# OUT=docs/results/r2r-heldout/wall-clean DBDIR=/tmp/r2r-wall (a fresh database: nothing resumed).
set -u
SIZE=${SIZE:-50}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-docs/results/r2r-heldout}
ROUTER=docs/results/r2r-router
DB=${DBDIR:-$HOME/.cache/a2r-graph/r2r-heldout}
mkdir -p "$DB" "$ROUTER"
export A2R_EXPLORER__TEMPERATURE=0 A2R_SYNTHESIZER__TEMPERATURE=0   # greedy, both models
export A2R_EXPLORER__INPUT_PRICE_PER_MTOK=0.05 A2R_EXPLORER__OUTPUT_PRICE_PER_MTOK=0.10
export A2R_SYNTHESIZER__INPUT_PRICE_PER_MTOK=0.15 A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK=0.30
export A2R_R2R__SLM_CACHED_INPUT_PRICE_PER_MTOK=0.005 A2R_R2R__LLM_CACHED_INPUT_PRICE_PER_MTOK=0.015
export A2R_R2R__TOP_K=10 A2R_R2R__MAX_TOKENS=512
if [ ! -s "$ROUTER/router.json" ]; then
  "$PY" -m a2r_graph.serving.cli train-router --size "${ROUTER_SIZE:-10}" --data-seed 1 \
    --max-tokens 256 --judge-per-question 3 --out "$ROUTER/router.json" \
    --labels "$ROUTER/labels.jsonl" > "$ROUTER/train.log" 2> "$DB/train.err"
  echo "train-router rc=$?"
fi
run() {  # name router threshold tokens_per_switch [router_file]
  env A2R_R2R__ROUTER=$2 A2R_R2R__THRESHOLD=$3 A2R_R2R__LLM_TOKENS_PER_SWITCH=$4 \
    ${5:+A2R_R2R__ROUTER_FILE=$5} "$PY" -m a2r_graph.serving.cli eval builtin:gsm_symbolic,number_sequence --data-seed 2 \
    --size "$SIZE" --concurrency 1 --graph r2r --db "$DB/$1.sqlite" --out "$OUT/$1" \
    > "$DB/$1.log" 2>&1
  echo "$1 done rc=$?"
}
if [ -n "${SEQUENTIAL:-}" ]; then alongside() { "$@"; }; else alongside() { "$@" & }; fi
# LLM alone: top1 < 2 flags every SLM token and the LLM writes 256 tokens a switch.
alongside run llm-alone top1 2 256
alongside run entropy-0.5 entropy 0.5 1
if [ -s "$ROUTER/router.json" ]; then
  alongside run linear linear "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['threshold'])" "$ROUTER/router.json")" 1 "$ROUTER/router.json"
fi
wait
