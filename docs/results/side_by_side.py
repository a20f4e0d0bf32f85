"""Every small+large configuration measured on the held-out problems, in one table and plot,
on the problems they all finished (issue #28, item 6).

    python docs/results/side_by_side.py [OUT_DIR]   # default docs/results/side-by-side

Sources (reasoning-gym data seed 2, 50 gsm_symbolic + 50 number_sequence, Qwen2.5-Coder 0.5B
and 1.5B on llama.cpp): `small-to-big` (A2R's eval: 4 samples of each model at temperature
0.7, 384 tokens; the 0.5B's paths, their vote, A2R over them with the 1.5B, and the 1.5B alone)
and `r2r-heldout` (greedy, 512 tokens: the 1.5B alone and the two routers), `a2r-routed` (A2R
over 2 routed paths, on its first problems: a row of its own). Every cost is at r2r-heldout's
prices (run.sh: 0.05/0.10 the 0.5B, 0.15/0.30 the 1.5B per 1M input/output tokens, the routed
runs' cached prefixes at a tenth), small-to-big's tokens repriced so.
"""

import gzip
import json
import sys
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "side-by-side"
PRICES = {"slm": (0.05, 0.10), "llm": (0.15, 0.30)}


def price(model: str, usage: dict) -> float:
    per_in, per_out = PRICES[model]
    return (usage["input_tokens"] * per_in + usage["output_tokens"] * per_out) / 1e6


def jsonl(path: Path) -> dict[str, dict]:
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {row["key"]: row for row in rows if not row.get("error")}


class Cell(NamedTuple):
    """One configuration's run of one problem."""

    correct: float
    cost: float
    share: float | None
    """Of the output tokens, the share the 1.5B wrote (None: not known)."""
    switches: float | None = None
    wall_s: float | None = None
    """Only where the line's own wall time means one run (the r2r-heldout evals)."""


def small_to_big(row: dict) -> dict[str, Cell]:
    cell, paths, alone = row["by_n"]["4"], row["paths"], row["alone"]
    explore = price("slm", cell["explore_usage"])
    synth = cell["synthesize_usage"]["output_tokens"]
    alone_costs = [price("llm", a["usage"]) for a in alone]
    return {
        "0.5B alone, Pass@1 (T=0.7)": Cell(
            sum(p["correct"] for p in paths) / len(paths), explore / len(paths), 0.0
        ),
        "0.5B Cons@4 (T=0.7)": Cell(cell["cons_correct"], explore, 0.0),
        "A2R: 4 x 0.5B -> 1.5B (T=0.7)": Cell(
            cell["a2r_correct"],
            explore + price("llm", cell["synthesize_usage"]),
            synth / (synth + cell["explore_usage"]["output_tokens"]),
        ),
        "1.5B alone, Pass@1 (T=0.7)": Cell(
            sum(a["correct"] for a in alone) / len(alone), sum(alone_costs) / len(alone), 1.0
        ),
        "1.5B Cons@4 (T=0.7)": Cell(
            cell["alone_cons_correct"], price("llm", cell["alone_usage"]), 1.0
        ),
    }


def routed(row: dict) -> Cell:
    strategy = row["strategy"]
    metrics, cost = strategy["metrics"], strategy["usage"]["total"]["cost"]
    if "tokens.llm" not in metrics:  # A2R over routed paths: the split is inside its paths
        return Cell(strategy["correct"], cost, None)
    share = metrics["tokens.llm"] / max(metrics["tokens.llm"] + metrics["tokens.slm"], 1)
    return Cell(strategy["correct"], cost, share, metrics["switches"], row["wall_s"])


R2R = {
    "1.5B alone, greedy": "r2r-heldout/llm-alone",
    "R2R entropy 0.5 (greedy)": "r2r-heldout/entropy-0.5",
    "R2R linear router (greedy)": "r2r-heldout/linear",
}
A2R_ROUTED = {"A2R: 2 routed paths -> 1.5B (T=0.7)": "a2r-routed/n2"}
COLUMNS = "| configuration | problems | Pass@1 | cost/query | 1.5B share of output tokens "
COLUMNS += "| switches/answer | wall s/query |"


def mean(values: list[float | None], form: str) -> str:
    known = [v for v in values if v is not None]
    return format(sum(known) / len(known), form) if known else "-"


def table(rows: dict[str, list[Cell]]) -> list[tuple[str, float, float, str]]:
    """Per configuration: its markdown row, Pass@1 and cost per query."""
    out = []
    for name, cells in rows.items():
        accuracy = 100 * sum(c.correct for c in cells) / len(cells)
        cost = sum(c.cost for c in cells) / len(cells)
        share = mean([c.share and 100 * c.share for c in cells], ".0f")
        switches, wall = (
            mean([c.switches for c in cells], ".1f"),
            mean([c.wall_s for c in cells], ".0f"),
        )
        share = share if share == "-" else f"{share}%"
        row = f"| {name} | {len(cells)} | {accuracy:.1f} | {cost:.3g} | {share} | {switches} "
        out.append((f"{row}| {wall} |", accuracy, cost, name))
    return out


def main() -> None:
    base = jsonl(HERE / "small-to-big" / "results.jsonl.gz")
    runs = {name: jsonl(HERE / path / "results.jsonl") for name, path in R2R.items()}
    common = sorted(set(base).intersection(*runs.values()))
    rows: dict[str, list[Cell]] = {}
    for key in common:
        for name, cell in small_to_big(base[key]).items():
            rows.setdefault(name, []).append(cell)
        for name, lines in runs.items():
            rows.setdefault(name, []).append(routed(lines[key]))
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{len(common)} held-out problems every configuration above the line finished "
        "(`python docs/results/side_by_side.py`). Wall times only for the r2r-heldout evals, "
        "which ran side by side on 2 cores.",
        "",
        COLUMNS,
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    result = table(rows)
    lines += [row for row, *_ in result]
    for name, path in A2R_ROUTED.items():
        found = jsonl(HERE / path / "results.jsonl")
        keys = sorted(k for k in found if k in base and k in runs["1.5B alone, greedy"])
        if not keys:
            continue
        lines.append(f"| *on its {len(keys)} problems:* | | | | | | |")
        extra = {name: [routed(found[k]) for k in keys]}
        for other in ("A2R: 4 x 0.5B -> 1.5B (T=0.7)", "1.5B alone, Pass@1 (T=0.7)"):
            extra[other] = [small_to_big(base[k])[other] for k in keys]
        extra["1.5B alone, greedy"] = [routed(runs["1.5B alone, greedy"][k]) for k in keys]
        lines += [row for row, *_ in table(extra)]
    (OUT / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    figure, axes = plt.subplots(figsize=(8, 6))
    for _, accuracy, cost, name in result:
        axes.scatter([cost * 1e6], [accuracy], label=name, zorder=3)
    axes.set_xlabel("cost per query (USD per 1M queries)")
    axes.set_ylabel("Pass@1 (%)")
    axes.set_title(f"Held-out, {len(common)} problems: 0.5B + 1.5B configurations")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    figure.tight_layout()
    figure.savefig(OUT / "accuracy_vs_cost.png", dpi=120)


if __name__ == "__main__":
    main()
