"""``a2r compare DIR...``: the evals of several strategies on the same problems, side by side.

Each DIR is an ``a2r eval`` output directory (its ``results.json``). An A2R eval gives several
rows (the explorer's Pass@1, A2R@N and Cons@N at each N, the synthesizer's model alone); an
eval of another strategy (``--graph``) gives one, with its routing figures where its results
have them (R2R: the LLM's share of output tokens, switches per answer). One markdown table and
one accuracy-vs-cost plot; rows of evals over different problems are refused.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a2r_graph.eval.results import SUMMARY_FILE


@dataclass(frozen=True)
class Row:
    name: str
    source: str
    queries: int
    accuracy: float | None
    cost_per_query: float | None
    tokens_per_query: float | None
    llm_share: float | None = None
    switches: float | None = None
    wall_s_per_query: float | None = None


def rows_of(directory: Path) -> list[Row]:
    """The rows of one eval's ``results.json``; ``ValueError`` naming what is missing."""
    path = directory / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path}: not readable ({error}): name an a2r eval's --out directory"
        ) from None
    source, queries = directory.name, summary.get("queries") or 0
    if "graph" in summary:  # another strategy's eval
        metrics = summary.get("metrics") or {}
        slm, llm = metrics.get("tokens.slm"), metrics.get("tokens.llm")
        share = llm / (slm + llm) if slm is not None and llm is not None and slm + llm else None
        return [
            Row(
                summary["graph"],
                source,
                queries,
                summary.get("pass_at_1"),
                summary.get("cost_per_query"),
                summary.get("tokens_per_query"),
                share,
                metrics.get("switches"),
                summary.get("wall_s_per_query"),
            )
        ]
    if "by_n" not in summary:
        raise ValueError(f"{path}: not the results.json of an a2r eval (no graph, no by_n)")
    explorer, _, synthesizer = str(summary.get("model", "")).partition(" -> ")
    rows = [
        Row(
            f"{explorer or 'explorer'} Pass@1",
            source,
            queries,
            summary.get("pass_at_1"),
            summary.get("pass_at_1_cost_per_query"),
            summary.get("pass_at_1_tokens_per_query"),
        )
    ]
    for n, cell in summary["by_n"].items():
        rows.append(
            Row(
                f"A2R@{n}",
                source,
                queries,
                cell.get("a2r"),
                cell.get("a2r_cost_per_query"),
                cell.get("a2r_tokens_per_query"),
            )  # fmt: skip
        )
        rows.append(
            Row(
                f"Cons@{n}",
                source,
                queries,
                cell.get("cons_at_n"),
                cell.get("cons_cost_per_query"),
                cell.get("cons_tokens_per_query"),
            )  # fmt: skip
        )
    if alone := summary.get("alone"):
        rows.append(
            Row(
                f"{synthesizer or 'synthesizer'} alone Pass@1",
                source,
                queries,
                alone.get("pass_at_1"),
                alone.get("cost_per_query"),
                alone.get("tokens_per_query"),
            )  # fmt: skip
        )
    return rows


def compare(directories: list[Path]) -> list[Row]:
    """Every eval's rows; ``ValueError`` if the evals did not answer the same number of
    problems (their accuracies would not compare)."""
    rows = [row for directory in directories for row in rows_of(directory)]
    counts = {row.source: row.queries for row in rows}
    if len(set(counts.values())) > 1:
        raise ValueError(
            "the evals answered different numbers of problems "
            f"({', '.join(f'{s}: {q}' for s, q in counts.items())}): compare evals of the same "
            "source, --size and --data-seed (run the shorter ones again to finish them)"
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| Configuration | Eval | Queries | Accuracy | Cost per query | Tokens per query "
        "| LLM share of output | Switches per answer | Wall s per query |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        cells = [
            _fmt(row.accuracy, ".1f"),
            _fmt(row.cost_per_query, ".7f"),
            _fmt(row.tokens_per_query, ".0f"),
            _fmt(None if row.llm_share is None else 100 * row.llm_share, ".1f", "%"),
            _fmt(row.switches, ".1f"),
            _fmt(row.wall_s_per_query, ".1f"),
        ]
        lines.append(f"| {row.name} | {row.source} | {row.queries} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        (row.name, row.cost_per_query, row.accuracy)
        for row in rows
        if row.accuracy is not None and row.cost_per_query is not None
    ]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, cost, accuracy in points:
        axes.scatter(cost, accuracy)
        axes.annotate(name, (cost, accuracy), fontsize=8)
    axes.set_xlabel("cost per query")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def add_arguments(command: argparse.ArgumentParser) -> None:
    """``a2r compare``'s arguments."""
    command.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="a2r eval outputs")
    command.add_argument("--out", type=Path, help="also write the table (markdown) here")
    command.add_argument("--plot", type=Path, help="also write the accuracy-vs-cost plot here")
    command.add_argument("--title", default="accuracy vs cost", help="the plot's title")


def main(args: Any) -> int:
    """several evals on the same problems, side by side (one table, one plot)

    Read each DIR's results.json (a2r eval --out, any --graph) and print one table: accuracy,
    cost, tokens, LLM share, switches and wall time per configuration.
    """
    rows = compare(args.dirs)
    text = table(rows)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.plot is not None:
        plot(rows, args.plot, args.title)
    return 0
