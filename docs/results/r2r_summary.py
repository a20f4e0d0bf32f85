"""One table over the problems every R2R configuration of a run finished, then each problem.

    python docs/results/r2r_summary.py docs/results/r2r-dev [CONFIG ...]
    python docs/results/r2r_summary.py docs/results/r2r-heldout

CONFIG: the run's eval folders (default: every folder with a results.jsonl). The last column
prices the prefixes each server had cached at nothing (a self-hosted server skips their
prefill), against run.sh's 10% of the input price: what the switches' re-sent prefixes cost.
"""

import json
import sys
from pathlib import Path

CACHED_PRICE_PER_MTOK = {"slm": 0.005, "llm": 0.015}
"""run.sh's A2R_R2R__{SLM,LLM}_CACHED_INPUT_PRICE_PER_MTOK."""

HERE = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "r2r-heldout"
CONFIGS = sys.argv[2:] or sorted(
    (p.parent.name for p in HERE.glob("*/results.jsonl")),
    key=lambda name: (name != "llm-alone", name),
)


def lines(config: str) -> dict[str, dict]:
    path = HERE / config / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows if row.get("strategy")}


runs = {config: lines(config) for config in CONFIGS if (HERE / config / "results.jsonl").exists()}
common = sorted(set.intersection(*(set(rows) for rows in runs.values())))
print(f"{len(common)} problems every configuration finished: {', '.join(common)}\n")
print(
    "| configuration | Pass@1 | gsm_symbolic | number_sequence | output tokens/answer "
    "| LLM share of output tokens | switches/answer | wall s/query | cost/query "
    "| cost/query, cached prefixes free |"
)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for config, rows in runs.items():
    sel = [rows[key] for key in common]
    n = len(sel)
    correct = [bool(r["strategy"]["correct"]) for r in sel]
    by_group = {}
    for r, ok in zip(sel, correct, strict=True):
        by_group.setdefault(r["group"], []).append(ok)
    slm = sum(r["strategy"]["metrics"]["tokens.slm"] for r in sel)
    llm = sum(r["strategy"]["metrics"]["tokens.llm"] for r in sel)
    switches = sum(r["strategy"]["metrics"]["switches"] for r in sel) / n
    wall = sum(r["wall_s"] for r in sel) / n
    cost = sum(r["strategy"]["usage"]["total"]["cost"] for r in sel) / n
    cached = sum(
        r["strategy"]["metrics"].get(f"cached_input_tokens.{model}", 0) * price / 1e6
        for r in sel
        for model, price in CACHED_PRICE_PER_MTOK.items()
    )
    groups = " | ".join(
        f"{sum(by_group.get(g, []))}/{len(by_group.get(g, []))}"
        for g in ("gsm_symbolic", "number_sequence")
    )
    print(
        f"| {config} | {100 * sum(correct) / n:.1f} | {groups} | {(slm + llm) / n:.0f} | "
        f"{100 * llm / (slm + llm):.1f}% | {switches:.1f} | {wall:.0f} | {cost:.3g} | "
        f"{cost - cached / n:.3g} |"
    )
print("\nPer problem (correct? boxed / LLM share / switches):\n")
print("| problem | gold | " + " | ".join(runs) + " |")
print("|---|---|" + "---|" * len(runs))
for key in common:
    first = next(iter(runs.values()))[key]
    cells = []
    for rows in runs.values():
        r = rows[key]
        m = r["strategy"]["metrics"]
        total = m["tokens.slm"] + m["tokens.llm"]
        mark = "ok" if r["strategy"]["correct"] else "x"
        share = 100 * m["tokens.llm"] / max(total, 1)
        cells.append(f"{mark} `{r['strategy']['boxed']}` / {share:.0f}% / {m['switches']:.0f}")
    print(f"| {first['id']} | `{first['gold']}` | " + " | ".join(cells) + " |")
