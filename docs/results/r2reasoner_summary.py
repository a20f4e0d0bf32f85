"""One table over the problems every R2-Reasoner configuration of a run finished, then each
problem; the baseline is ``large-alone`` (the 1.5B answering the whole question).

    python docs/results/r2reasoner_summary.py docs/results/r2reasoner-dev
"""

import json
import sys
from pathlib import Path
from statistics import mean

HERE = Path(sys.argv[1])
BASE = "large-alone"
runs = {}
for path in sorted(HERE.glob("*/results.jsonl"), key=lambda p: (p.parent.name != BASE, p)):
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    runs[path.parent.name] = {row["key"]: row for row in rows if row.get("strategy")}
common = sorted(set.intersection(*(set(rows) for rows in runs.values())))
print(f"{len(common)} problems every configuration finished\n")
print(
    "| configuration | Pass@1 | gsm_symbolic | number_sequence | cost/query | cost vs 1.5B alone "
    "| 1.5B share of output tokens | escalations/query | no usable plan | wall s/query |"
)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
base_cost = mean(runs[BASE][k]["strategy"]["usage"]["total"]["cost"] for k in common)
for config, rows in runs.items():
    cells = [rows[key] for key in common]
    right = {g: [c["strategy"]["correct"] for c in cells if c["group"] == g] for g in
             ("gsm_symbolic", "number_sequence")}  # fmt: skip
    metrics = [c["strategy"]["metrics"] for c in cells]
    cost = mean(c["strategy"]["usage"]["total"]["cost"] for c in cells)
    unplanned = sum(m.get("plan.subtasks", 1) == 0 and m["plan.attempts"] > 0 for m in metrics)
    print(
        f"| {config} | {100 * mean(c['strategy']['correct'] for c in cells):.1f} | "
        + " | ".join(f"{sum(v)}/{len(v)}" for v in right.values())
        + f" | {cost:.3g} | {cost / base_cost:.2f}x | "
        f"{100 * mean(m['shares.large.output_tokens'] for m in metrics):.0f}% | "
        f"{mean(m['escalations'] for m in metrics):.2f} | {unplanned}/{len(cells)} | "
        f"{mean(c['wall_s'] for c in cells):.0f} |"
    )


def mark(row: dict) -> str:
    return f"{'ok' if row['strategy']['correct'] else 'x'} `{row['strategy']['boxed']}`"


print("\nPer problem (correct? boxed):\n")
print("| problem | gold | " + " | ".join(runs) + " |")
print("|---|---|" + "---|" * len(runs))
for key in common:
    row = runs[BASE][key]
    print(f"| {row['id']} | `{row['gold']}` | {' | '.join(mark(r[key]) for r in runs.values())} |")
