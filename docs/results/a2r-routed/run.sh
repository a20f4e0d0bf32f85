#!/usr/bin/env bash
# A2R over routed paths (issue #28, item 4), from the repository root:
#   nice -n 5 python -m servers.embedded exec --explorer qwen2.5-coder-0.5b \
#     --synthesizer qwen2.5-coder-1.5b --engine llamacpp -- bash docs/results/a2r-routed/run.sh
# N routed explorer paths (the 0.5B writes, the 1.5B takes the tokens the entropy router flags
# at the threshold the R2R dev sweep chose), temperature 0.7 on both models (paths differ by
# A2R's per-path seed), then the package's default synthesis mode, vote_first: the paths'
# answer when they agree, else the 1.5B synthesizes. The first SIZE held-out problems of each
# generator (data seed 2): the same problems as ../r2r-heldout and ../small-to-big, and the
# same prices. Resumable: rerun the same command.
set -u
SIZE=${SIZE:-5}
PY=${PY:-.venv/bin/python}
OUT=docs/results/a2r-routed
DB=${DBDIR:-$HOME/.cache/a2r-graph/a2r-routed}
mkdir -p "$DB"
export PYTHONPATH=$OUT A2R_STRATEGIES=strategy:A2R_ROUTED
export A2R_SYNTHESIS_MODE=${MODE:-vote_first} A2R_N=${N:-2} A2R_EXPLORER__TEMPERATURE=0.7 A2R_EXPLORER__MAX_TOKENS=384 A2R_EXPLORER__SEED=7
export A2R_SYNTHESIZER__TEMPERATURE=0.7 A2R_SYNTHESIZER__MAX_TOKENS=384
export A2R_EXPLORER__INPUT_PRICE_PER_MTOK=0.05 A2R_EXPLORER__OUTPUT_PRICE_PER_MTOK=0.10
export A2R_SYNTHESIZER__INPUT_PRICE_PER_MTOK=0.15 A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK=0.30
export A2R_R2R__SLM_CACHED_INPUT_PRICE_PER_MTOK=0.005 A2R_R2R__LLM_CACHED_INPUT_PRICE_PER_MTOK=0.015
export A2R_R2R__TOP_K=10 A2R_R2R__ROUTER=entropy A2R_R2R__THRESHOLD=0.5
"$PY" -m a2r_graph.serving.cli eval builtin:gsm_symbolic,number_sequence --data-seed 2 \
  --size "$SIZE" --concurrency 1 --graph a2r-routed --db "$DB/a2r-routed.sqlite" --out "$OUT/n$A2R_N" \
  > "$DB/a2r-routed-n$A2R_N.log" 2>&1
echo "a2r-routed n=$A2R_N rc=$?"
