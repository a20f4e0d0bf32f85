#!/usr/bin/env bash
# R2-Reasoner on development problems (issue #29; data seed 1), from the repository root:
#   nice -n 5 .venv/bin/python -m servers.embedded exec --explorer qwen2.5-coder-0.5b \
#     --synthesizer qwen2.5-coder-1.5b --engine llamacpp -- bash docs/results/r2reasoner-dev/run.sh
# Tiers: small = the 0.5B (A2R_EXPLORER__*), large = the 1.5B (A2R_SYNTHESIZER__*); greedy,
# 512 output tokens a call, the same for every configuration; prices as the R2R runs'.
# Resumable: rerun the same command (finished problems are kept: --db, results.jsonl).
# SEED=2 OUT=docs/results/r2reasoner-heldout runs the same on the held-out split; ONLY="name ..."
# runs some configurations (with a DBDIR of their own when the code changed since their run).
set -u
SIZE=${SIZE:-5}
SEED=${SEED:-1}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-docs/results/r2reasoner-dev}
DB=${DBDIR:-$HOME/.cache/a2r-graph/r2reasoner-seed$SEED}
ONLY=" ${ONLY:-large-alone plan-large plan-large-sum-small} "
mkdir -p "$DB"
export A2R_EXPLORER__TEMPERATURE=0 A2R_SYNTHESIZER__TEMPERATURE=0
export A2R_EXPLORER__MAX_TOKENS=512 A2R_SYNTHESIZER__MAX_TOKENS=512
export A2R_EXPLORER__INPUT_PRICE_PER_MTOK=0.05 A2R_EXPLORER__OUTPUT_PRICE_PER_MTOK=0.10
export A2R_SYNTHESIZER__INPUT_PRICE_PER_MTOK=0.15 A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK=0.30
run() {  # name, then A2R_R2REASONER__* settings
  local name=$1; shift
  case "$ONLY" in *" $name "*) ;; *) return ;; esac
  env "$@" "$PY" -m a2r_graph.serving.cli eval builtin:gsm_symbolic,number_sequence \
    --data-seed "$SEED" --size "$SIZE" --concurrency 1 --graph r2reasoner \
    --db "$DB/$name.sqlite" --out "$OUT/$name" > "$DB/$name.log" 2>&1
  echo "$name done rc=$?"
}
S=A2R_R2REASONER_
# the 1.5B alone: no plan, the large tier answers the whole question
run large-alone ${S}_PLAN_ATTEMPTS=0 &
# the 1.5B plans and summarizes, the 0.5B answers every subtask
run plan-large ${S}_DECOMPOSER=large ${S}_SUMMARIZER=large &
# the 1.5B plans, the 0.5B answers and summarizes; a subtask without a result escalates
run plan-large-sum-small ${S}_DECOMPOSER=large ${S}_SUMMARIZER=small ${S}_ESCALATE_BELOW=0 &
wait
