"""From ``results.jsonl`` to the paper's Table 1 layout, a results JSON and an accuracy-vs-cost
plot (A2R and Cons@N across N, Pass@1 as one point)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from a2r_graph.eval.metrics import METRICS, mean_of, pass_at_1
from a2r_graph.eval.outcomes import outcomes_table, synthesis_outcomes
from a2r_graph.eval.policies import POLICIES, VARIANTS
from a2r_graph.eval.results import ResultLine, Synthesis
from a2r_graph.stages import USAGE_KEYS


def policy_label(name: str) -> str:
    """A replayed policy's or synthesis option's label in the table and the plot."""
    return POLICIES[name] if name in POLICIES else VARIANTS[name][0]


def summarize(
    rows: Sequence[ResultLine], ns: Sequence[int], *, failed: int | None = None
) -> dict[str, Any]:
    """Accuracies (0-100) and mean tokens and cost per query, per N, over the finished
    (problem, repetition) lines. Failed problems are never counted as wrong: ``failed`` is
    how many did not finish (default: the distinct keys of failed lines in ``rows`` that have
    no finished line). With no finished line, the accuracies are None (nothing to judge)."""
    rows, failed = _finished(rows, failed)
    samples = [p.correct for row in rows for p in row.paths]
    one_path = [p.usage for row in rows for p in row.paths]

    def accuracy(values: list[bool]) -> float | None:
        return 100 * mean_of(values) if rows else None

    summary: dict[str, Any] = {
        "queries": len(rows),
        "failed": failed,
        "verify_timeouts": sum(row.verify_timeouts for row in rows),
        "pass_at_1": 100 * pass_at_1(samples) if rows else None,
        "pass_at_1_cost_per_query": mean_of([u.cost for u in one_path]),
        "pass_at_1_tokens_per_query": mean_of([u.tokens for u in one_path]),
        "by_n": {},
    }
    alone = [p for row in rows for p in row.alone]
    if alone:  # the synthesizer's model answering alone: the baseline A2R must beat
        summary["alone"] = {
            "pass_at_1": 100 * pass_at_1([p.correct for p in alone]),
            "cost_per_query": mean_of([p.usage.cost for p in alone]),
            "tokens_per_query": mean_of([p.usage.tokens for p in alone]),
        }
    for n in ns:
        # a line without this N (another --ns) counts as wrong in the accuracies
        cells = [row.by_n.get(str(n)) for row in rows]
        done = [c for c in cells if c is not None]

        def mean_usage(stage: str, key: str, done: list[Synthesis] = done) -> float:
            return mean_of([getattr(getattr(c, f"{stage}_usage"), key) for c in done])

        explore_cost = mean_usage("explore", "cost")
        synth_cost = mean_usage("synthesize", "cost")
        summary["by_n"][str(n)] = {
            **{
                m.key: accuracy([c is not None and getattr(c, m.cell) for c in cells])
                for m in METRICS
            },
            "explore_input_tokens": mean_usage("explore", "input_tokens"),
            "explore_output_tokens": mean_usage("explore", "output_tokens"),
            "synthesize_input_tokens": mean_usage("synthesize", "input_tokens"),
            "synthesize_output_tokens": mean_usage("synthesize", "output_tokens"),
            "cons_cost_per_query": explore_cost,
            "a2r_cost_per_query": explore_cost + synth_cost,
            "a2r_cost_per_1k_queries": 1000 * (explore_cost + synth_cost),
            "cons_tokens_per_query": mean_usage("explore", "input_tokens")
            + mean_usage("explore", "output_tokens"),
            "a2r_tokens_per_query": sum(
                mean_usage(stage, key)
                for stage in USAGE_KEYS
                for key in ("input_tokens", "output_tokens")
            ),
        }
        solo = [(c.alone_cons_correct, c.alone_usage) for c in done if c.alone_usage is not None]
        if solo:
            summary["by_n"][str(n)] |= {
                "alone_cons_at_n": 100 * mean_of([bool(right) for right, _ in solo]),
                "alone_cons_cost_per_query": mean_of([usage.cost for _, usage in solo]),
                "alone_cons_tokens_per_query": mean_of([usage.tokens for _, usage in solo]),
            }
    summary["policies"] = _policies(rows)
    if ns:
        summary["synthesis"] = synthesis_outcomes(rows, max(ns))
    groups = sorted({row.group for row in rows if row.group})
    if len(groups) > 1:  # mixed generators: each one's figures too
        summary["groups"] = {
            group: summarize([row for row in rows if row.group == group], ns, failed=0)
            for group in groups
        }
    return summary


def _finished(rows: Sequence[ResultLine], failed: int | None) -> tuple[list[ResultLine], int]:
    """The finished lines, and how many problems failed (default: the distinct keys of failed
    lines in ``rows`` that have no finished line)."""
    finished = [row for row in rows if row.finished]
    if failed is None:
        failed_keys = {row.key for row in rows if not row.finished}
        failed = len(failed_keys - {row.key for row in finished})
    return finished, failed


STAGE_FIELDS = ("calls", "input_tokens", "output_tokens", "cost")


def summarize_strategy(rows: Sequence[ResultLine], *, failed: int | None = None) -> dict[str, Any]:
    """Another strategy's eval (``a2r eval --graph``): Pass@1 (0-100, over every finished
    run), cost, tokens and wall time per query, calls, tokens and cost per stage per query (a
    stage a run lacks counts 0), and the mean of each of its metrics over the runs that report
    it. Failed problems are never counted as wrong (``failed`` as in ``summarize``)."""
    rows, failed = _finished(rows, failed)
    cells = [row.strategy for row in rows if row.strategy is not None]
    totals = [cell.total for cell in cells]
    stages = list(dict.fromkeys(stage for cell in cells for stage in cell.usage))
    stages.sort(key=lambda stage: stage == "total")  # the stages in their order, then total
    walls = [row.wall_s for row in rows if row.wall_s is not None]
    names = list(dict.fromkeys(name for cell in cells for name in cell.metrics))
    summary: dict[str, Any] = {
        "queries": len(cells),
        "failed": failed,
        "verify_timeouts": sum(row.verify_timeouts for row in rows),
        "pass_at_1": 100 * pass_at_1([cell.correct for cell in cells]) if cells else None,
        "cost_per_query": mean_of([usage.cost for usage in totals]),
        "tokens_per_query": mean_of([usage.tokens for usage in totals]),
        "wall_s_per_query": mean_of(walls) if walls else None,
        "stages": {
            stage: {
                key: mean_of(
                    [getattr(c.usage[stage], key) if stage in c.usage else 0 for c in cells]
                )
                for key in STAGE_FIELDS
            }
            for stage in stages
        },
        "metrics": {
            name: mean_of([c.metrics[name] for c in cells if name in c.metrics]) for name in names
        },
    }
    groups = sorted({row.group for row in rows if row.group})
    if len(groups) > 1:  # mixed generators: each one's figures too
        summary["groups"] = {
            group: summarize_strategy([row for row in rows if row.group == group], failed=0)
            for group in groups
        }
    return summary


def strategy_table(summary: dict[str, Any], benchmark: str, graph: str) -> str:
    """``summarize_strategy`` as markdown: accuracy, cost, tokens and wall time per query (per
    group, then all), the stages, the strategy's metrics, then what finished and failed."""
    if not summary["queries"]:
        return (
            f"No problem of {benchmark} finished ({summary['failed']} failed): no accuracy "
            "to report. Run the same command again to retry them."
        )
    lines = [
        "| Benchmark | Graph | Pass@1 | Cost per query | Tokens per query | Wall s per query |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for name, part in [*summary.get("groups", {}).items(), (benchmark, summary)]:
        lines.append(
            f"| {name} | {graph} | {part['pass_at_1']:.1f} | {part['cost_per_query']:.6f} | "
            f"{part['tokens_per_query']:.0f} | {_maybe(part['wall_s_per_query'], '.1f')} |"
        )
    lines += [
        "",
        "| Stage | calls per query | input tokens per query | output tokens per query "
        "| cost per query |",
        "|---|--:|--:|--:|--:|",
    ]
    for stage, usage in summary["stages"].items():
        lines.append(
            f"| {stage} | {usage['calls']:.2f} | {usage['input_tokens']:.0f} | "
            f"{usage['output_tokens']:.0f} | {usage['cost']:.6f} |"
        )
    if summary["metrics"]:
        lines += ["", "| Metric | mean per query |", "|---|--:|"]
        lines += [f"| {name} | {value:.4g} |" for name, value in summary["metrics"].items()]
    return "\n".join(lines + footer(summary))


def _policies(rows: Sequence[ResultLine]) -> dict[str, Any]:
    """Per replayed policy (``eval.policies``): accuracy, tokens and cost per query, and how
    often it answered without the synthesizer, over the rows that have it."""
    out: dict[str, Any] = {}
    for name in [*POLICIES, *VARIANTS]:
        cells = [row.policies[name] for row in rows if name in row.policies]
        if not cells:
            continue
        out[name] = {
            "queries": len(cells),
            "accuracy": 100 * mean_of([c.correct for c in cells]),
            "tokens_per_query": mean_of([c.usage.tokens for c in cells]),
            "output_tokens_per_query": mean_of([c.usage.output_tokens for c in cells]),
            "cost_per_query": mean_of([c.usage.cost for c in cells]),
            "shortcut_share": 100 * mean_of([c.shortcut for c in cells]),
        }
    return out


def policy_table(summary: dict[str, Any]) -> str:
    """The replayed policies at the largest N next to A2R and Cons@N there: accuracy, and
    tokens and cost per query (with the change against the full A2R run)."""
    policies = summary.get("policies")
    if not policies or not summary["by_n"]:
        return ""
    n, cell = list(summary["by_n"].items())[-1]
    full_tokens = cell["a2r_tokens_per_query"]
    rows = [
        ("A2R (full)", cell["a2r"], full_tokens, cell["a2r_cost_per_query"], 0.0),
        (
            "Cons@N",
            cell["cons_at_n"],
            cell["cons_tokens_per_query"],
            cell["cons_cost_per_query"],
            None,
        ),
    ]
    rows += [
        (
            policy_label(name),
            p["accuracy"],
            p["tokens_per_query"],
            p["cost_per_query"],
            p["shortcut_share"],
        )
        for name, p in policies.items()
    ]
    groups = summary.get("groups", {})
    by_group = [  # each row's accuracy in each group, in the order of ``rows``
        [
            g["by_n"][n]["a2r"],
            g["by_n"][n]["cons_at_n"],
            *(g["policies"].get(name, {}).get("accuracy") for name in policies),
        ]
        for g in groups.values()
    ]
    lines = [
        f"| Policy (N={n}) | Accuracy | Tokens per query | vs full A2R | Cost per query "
        "| No synthesis |" + "".join(f" {name} |" for name in groups),
        "|---|--:|--:|--:|--:|--:|" + "--:|" * len(groups),
    ]
    for i, (label, accuracy, tokens, cost, skipped) in enumerate(rows):
        change = f"{100 * (tokens / full_tokens - 1):+.1f}%" if full_tokens else "–"
        lines.append(
            f"| {label} | {accuracy:.1f} | {tokens:.0f} | {change} | {cost:.6f} | "
            f"{_maybe(skipped, '.0f')}{'%' if skipped is not None else ''} |"
            + "".join(f" {_maybe(g[i], '.1f')} |" for g in by_group)
        )
    return "\n".join(lines)


def markdown_table(summary: dict[str, Any], benchmark: str, model: str) -> str:
    """Table 1's layout (Benchmark x Model x Pass@1, Cons@N, Pass@N, A2R), then the costs,
    then how many problems finished and how many failed (apart: not in the accuracies)."""
    if not summary["queries"]:
        return (
            f"No problem of {benchmark} finished ({summary['failed']} failed): no accuracy "
            "to report. Run the same command again to retry them."
        )
    alone = summary.get("alone")
    lines = [
        "| Benchmark | Model | N | Pass@1 |"
        + "".join(f" {m.label} |" for m in METRICS)
        + (" Synthesizer alone: Pass@1 | Cons@N |" if alone else ""),
        "|---|---|--:|--:|" + "--:|" * len(METRICS) + ("--:|--:|" if alone else ""),
    ]
    parts = [*summary.get("groups", {}).items(), (benchmark, summary)]
    for name, part in parts:
        for n, cell in part["by_n"].items():
            line = f"| {name} | {model} | {n} | {part['pass_at_1']:.1f} |" + "".join(
                f" {cell[m.key]:.1f} |" for m in METRICS
            )
            if alone:
                line += (
                    f" {_maybe(part.get('alone', {}).get('pass_at_1'), '.1f')} | "
                    f"{_maybe(cell.get('alone_cons_at_n'), '.1f')} |"
                )
            lines.append(line)
    lines += [
        "",
        (
            "| N | explore tokens in/out per query | synthesize tokens in/out per query | "
            "A2R cost per query | A2R cost per 1K queries | Cons@N cost per query |"
            + (" synthesizer alone: Pass@1 / Cons@N cost per query |" if alone else "")
        ),
        "|--:|--:|--:|--:|--:|--:|" + ("--:|" if alone else ""),
    ]
    for n, cell in summary["by_n"].items():
        line = (
            f"| {n} | {cell['explore_input_tokens']:.0f} / {cell['explore_output_tokens']:.0f} | "
            f"{cell['synthesize_input_tokens']:.0f} / {cell['synthesize_output_tokens']:.0f} | "
            f"{cell['a2r_cost_per_query']:.6f} | {cell['a2r_cost_per_1k_queries']:.4f} | "
            f"{cell['cons_cost_per_query']:.6f} |"
        )
        if alone:
            line += (
                f" {alone['cost_per_query']:.6f} / "
                f"{_maybe(cell.get('alone_cons_cost_per_query'), '.6f')} |"
            )
        lines.append(line)
    lines += footer(summary)
    if policies := policy_table(summary):
        lines += ["", policies]
    if outcomes := outcomes_table(summary.get("synthesis") or {"outcomes": {}}):
        lines += ["", outcomes]
    return "\n".join(lines)


def footer(summary: dict[str, Any]) -> list[str]:
    """How many problems finished, failed (left out of the accuracies) and are not run yet;
    answer checks that timed out; the eval's wall time."""
    text = f"\n{summary['queries']} queries finished"
    if summary["failed"]:
        text += (
            f"; {summary['failed']} failed and are left out (accuracy is over the finished "
            "ones; run the same command again to retry them)"
        )
    if summary.get("pending"):
        text += f"; {summary['pending']} not run yet"
    if summary.get("verify_timeouts"):
        text += (
            f"; {summary['verify_timeouts']} answer checks overran math-verify's time limit "
            "(counted not equivalent)"
        )
    lines = [text + "."]
    if wall_s := summary.get("wall_s"):
        lines.append(
            f"Wall time: {wall_s / 60:.1f} min over {summary['invocations']} invocation(s) "
            "of this eval."
        )
    return lines


def _maybe(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def plot_accuracy_vs_cost(summary: dict[str, Any], path: Path, title: str) -> Path:
    """A2R and Cons@N per N, Pass@1 as one point; cost per query on x, or tokens per query
    when no prices are set."""
    priced = summary["pass_at_1_cost_per_query"] > 0
    unit = "cost" if priced else "tokens"
    cells = summary["by_n"]
    with _plot(path, title, priced) as axes:
        lines = [(m.cost, m.key, m.label, m.marker) for m in METRICS if m.cost]
        lines.append(("alone_cons", "alone_cons_at_n", "synthesizer alone, Cons@N", "D"))
        for prefix, accuracy, label, marker in lines:
            points = [
                (n, cell[f"{prefix}_{unit}_per_query"], cell[accuracy])
                for n, cell in cells.items()
                if accuracy in cell
            ]
            if not points:
                continue
            axes.plot(
                [x for _, x, _ in points], [y for _, _, y in points], marker=marker, label=label
            )
            for n, x, y in points:
                axes.annotate(f"N={n}", (x, y), textcoords="offset points", xytext=(4, 4))
        singles = [(summary[f"pass_at_1_{unit}_per_query"], summary["pass_at_1"], "Pass@1", "^")]
        if alone := summary.get("alone"):
            singles.append(
                (alone[f"{unit}_per_query"], alone["pass_at_1"], "synthesizer alone, Pass@1", "v")
            )
        for x, y, label, marker in singles:
            axes.scatter([x], [y], marker=marker, color="black", label=label, zorder=3)
        for name, policy in summary.get("policies", {}).items():
            axes.scatter(
                [policy[f"{unit}_per_query"]],
                [policy["accuracy"]],
                marker="x",
                label=policy_label(name),
                zorder=3,
            )
    return path


@contextmanager
def _plot(path: Path, title: str, priced: bool) -> Iterator[Any]:
    """The axes of an accuracy-vs-cost plot (tokens on x when no prices are set), saved to
    ``path`` when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(figsize=(10, 4.5), dpi=120)
    yield axes
    axes.set_xlabel("cost per query" if priced else "tokens per query (no prices set)")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(-5, 105)
    axes.set_title(textwrap.fill(title, 70), fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_strategy(summary: dict[str, Any], path: Path, title: str, graph: str) -> Path:
    """Another strategy's Pass@1 against its cost per query (tokens when no prices are set),
    one point per group and one for all."""
    priced = summary["cost_per_query"] > 0
    unit = "cost" if priced else "tokens"
    with _plot(path, title, priced) as axes:
        for name, part in summary.get("groups", {}).items():
            axes.scatter([part[f"{unit}_per_query"]], [part["pass_at_1"]], label=name)
        axes.scatter(
            [summary[f"{unit}_per_query"]],
            [summary["pass_at_1"]],
            marker="^",
            color="black",
            label=f"{graph}, Pass@1",
            zorder=3,
        )
    return path
