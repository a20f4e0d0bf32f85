"""What to run, from an eval: every configuration it measured (A2R and Cons@N at each N,
Pass@1, the replayed policies and synthesis options, the synthesizer's model alone), their
accuracy/cost Pareto front, and the one an objective picks, as a context to run it with.

The pick should be made on development data and reported on held-out data: ``--choose-on
DIR`` takes the choice from an earlier eval's ``results.json`` (the development split) and
reports it with this eval's figures; without it the choice is this eval's own, and says so.

Objectives: ``accurate`` (the most accurate), ``cheap`` (the cheapest within 1 point of the
most accurate, the default) and ``cap:COST`` (the most accurate at most COST per query).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from a2r_graph.context import A2RContext
from a2r_graph.eval.policies import VARIANTS, variant_context
from a2r_graph.eval.report import policy_label
from a2r_graph.fields import env_variable

WITHIN = 1.0
"""``cheap``: accuracy points below the best that still count as the best."""


@dataclass(frozen=True)
class Configuration:
    """One measured way to run: its figures, and the context fields that run it."""

    key: str
    label: str
    accuracy: float
    cost_per_query: float
    context: dict[str, Any]


def configurations(summary: Mapping[str, Any], context: A2RContext) -> list[Configuration]:
    """Every runnable configuration ``summary`` (``report.summarize``) measured; ``context``
    is the eval's (the replayed policies' settings come from it)."""
    out = []
    if summary.get("pass_at_1") is not None:
        out.append(
            Configuration(
                "pass_at_1",
                "one explorer path (Pass@1)",
                summary["pass_at_1"],
                summary["pass_at_1_cost_per_query"],
                {"n": 1, "synthesis_mode": "vote"},
            )
        )
    synthesizer_alone = {
        "explorer": {
            "base_url": str(context.synthesizer.base_url),
            "model": context.synthesizer.model,
        }
    }
    if alone := summary.get("alone"):
        out.append(
            Configuration(
                "alone_pass_at_1",
                "the synthesizer's model alone (Pass@1)",
                alone["pass_at_1"],
                alone["cost_per_query"],
                {**synthesizer_alone, "n": 1, "synthesis_mode": "vote"},
            )
        )
    for n, cell in summary.get("by_n", {}).items():
        if cell.get("a2r") is None:
            continue
        out += [
            Configuration(
                f"a2r@{n}",
                f"A2R, N={n}",
                cell["a2r"],
                cell["a2r_cost_per_query"],
                {"n": int(n), "synthesis_mode": "synthesize"},
            ),
            Configuration(
                f"cons@{n}",
                f"Cons@{n} (vote)",
                cell["cons_at_n"],
                cell["cons_cost_per_query"],
                {"n": int(n), "synthesis_mode": "vote"},
            ),
        ]
        if "alone_cons_at_n" in cell:
            out.append(
                Configuration(
                    f"alone_cons@{n}",
                    f"the synthesizer's model alone, Cons@{n}",
                    cell["alone_cons_at_n"],
                    cell["alone_cons_cost_per_query"],
                    {**synthesizer_alone, "n": int(n), "synthesis_mode": "vote"},
                )
            )
    if summary.get("by_n"):
        top = int(list(summary["by_n"])[-1])
        for name, policy in summary.get("policies", {}).items():
            fields = _policy_fields(name, top, context)
            if fields is not None:
                out.append(
                    Configuration(
                        name,
                        policy_label(name),
                        policy["accuracy"],
                        policy["cost_per_query"],
                        {"n": top, **fields},
                    )
                )
    return out


def _policy_fields(name: str, n: int, context: A2RContext) -> dict[str, Any] | None:
    """The context fields that run a replayed policy or variant; None: not a graph setting
    (``cons_top50``)."""
    confidence = (
        {"confidence": context.confidence.model_dump(exclude_defaults=True) or {"top_logprobs": 5}}
        if context.confidence
        else {"confidence": {"top_logprobs": 5}}
    )
    synthesize = {"synthesis_mode": "synthesize"}
    fields: dict[str, dict[str, Any]] = {
        "shortcut": {**synthesize, "shortcut": True},
        "shortcut_75": {**synthesize, "shortcut": True, "agreement": {"min_share": 0.75}},
        "vote_first": {"synthesis_mode": "vote_first"},
        "waves": {**synthesize, "waves": [n // 2]},
        "waves_shortcut": {**synthesize, "waves": [n // 2], "shortcut": True},
        "top_references": {**synthesize, **confidence, "top_references": max(n // 2, 1)},
        "cons_weighted": {"synthesis_mode": "weighted_vote", **confidence},
        "alone_a2r": {
            **synthesize,
            "explorer": {
                "base_url": str(context.synthesizer.base_url),
                "model": context.synthesizer.model,
            },
        },
    }
    if name in fields:
        return fields[name]
    if name in VARIANTS:
        changed = variant_context(context, name).model_dump(mode="json", exclude_defaults=True)
        base = context.model_dump(mode="json", exclude_defaults=True)
        return {**synthesize, **_difference(changed, base)}
    return None


def _difference(changed: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in changed.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            if inner := _difference(value, base[key]):
                out[key] = inner
        elif base.get(key) != value:
            out[key] = value
    return out


def front(configs: list[Configuration]) -> list[Configuration]:
    """The configurations no other beats on both accuracy and cost, cheapest first."""
    kept = [
        c
        for c in configs
        if not any(
            o.accuracy >= c.accuracy
            and o.cost_per_query <= c.cost_per_query
            and (o.accuracy > c.accuracy or o.cost_per_query < c.cost_per_query)
            for o in configs
        )
    ]
    return sorted(kept, key=lambda c: (c.cost_per_query, -c.accuracy))


def parse_objective(text: str) -> str:
    """``accurate``, ``cheap`` or ``cap:COST``; ``ValueError`` naming the choices."""
    if text in ("accurate", "cheap"):
        return text
    if text.startswith("cap:"):
        try:
            if float(text[4:]) >= 0:
                return text
        except ValueError:
            pass
    raise ValueError(
        f"objective {text!r}: use accurate, cheap (within {WITHIN:g} point of the best) or "
        "cap:COST (the most accurate at most COST per query, e.g. cap:0.0001)"
    )


def choose(configs: list[Configuration], objective: str) -> Configuration | None:
    """The configuration ``objective`` picks (ties: the cheaper, then the first measured)."""
    if not configs:
        return None
    best = max(c.accuracy for c in configs)
    if objective == "accurate":
        pool = [c for c in configs if c.accuracy == best]
    elif objective == "cheap":
        pool = [c for c in configs if c.accuracy >= best - WITHIN]
        return min(pool, key=lambda c: c.cost_per_query)
    else:
        cap = float(objective.removeprefix("cap:"))
        affordable = [c for c in configs if c.cost_per_query <= cap]
        if not affordable:
            return None
        top = max(c.accuracy for c in affordable)
        pool = [c for c in affordable if c.accuracy == top]
    return min(pool, key=lambda c: c.cost_per_query)


def env_lines(context: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The ``A2R_*`` lines that set ``context``'s fields."""
    lines = []
    for key, value in context.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("extra_body",):
            lines += env_lines(value, f"{path}.")
            continue
        text = json.dumps(value) if isinstance(value, list | dict | bool) else str(value)
        lines.append(f"{env_variable(path)}={text}")
    return lines


def recommend(
    summary: Mapping[str, Any],
    context: A2RContext,
    objective: str = "cheap",
    choose_on: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The front and the pick, for ``results.json``: chosen on ``choose_on`` (an earlier
    eval's ``recommendation``) when given, else on ``summary`` itself."""
    here = configurations(summary, context)
    by_key = {c.key: c for c in here}
    if choose_on is not None:
        measured = [Configuration(**c) for c in choose_on.get("configurations", [])]
        picked = choose(measured, objective)
        chosen = by_key.get(picked.key) if picked else None
        source = f"chosen on {choose_on.get('from', 'an earlier eval')}"
    else:
        chosen = choose(here, objective)
        source = "chosen on this eval's own data (choose on development data: --choose-on DIR)"
    return {
        "objective": objective,
        "chosen_on": source,
        "configurations": [asdict(c) for c in here],
        "front": [c.key for c in front(here)],
        "chosen": None if chosen is None else asdict(chosen),
    }


def recommendation_text(recommendation: Mapping[str, Any]) -> str:
    """The front and the pick, printed after the table."""
    configs = {c["key"]: c for c in recommendation["configurations"]}
    lines = ["Accuracy/cost front (no configuration measured here is both better and cheaper):"]
    for key in recommendation["front"]:
        c = configs[key]
        lines.append(f"  {c['accuracy']:5.1f}  {c['cost_per_query']:.6f}/query  {c['label']}")
    chosen = recommendation["chosen"]
    objective = recommendation["objective"]
    if chosen is None:
        lines.append(f"\nNo configuration meets the objective {objective}.")
        return "\n".join(lines)
    lines += [
        f"\nRecommended for {objective} ({recommendation['chosen_on']}): {chosen['label']}, "
        f"{chosen['accuracy']:.1f} at {chosen['cost_per_query']:.6f} per query",
        "  environment:",
        *(f"    {line}" for line in env_lines(chosen["context"])),
        f"  assistant or run context: {json.dumps(chosen['context'])}",
    ]
    return "\n".join(lines)


def read_recommendation(directory: Path) -> dict[str, Any]:
    """The ``recommendation`` of an earlier eval's ``results.json`` in ``directory``."""
    path = directory / "results.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("recommendation")
    except (OSError, ValueError) as error:
        raise ValueError(f"--choose-on {directory}: cannot read {path}: {error}") from error
    if not isinstance(found, dict) or "configurations" not in found:
        raise ValueError(
            f"--choose-on {directory}: {path} has no recommendation (an eval of this version "
            "writes one; run `a2r eval --report --out DIR` on it first)"
        )
    return {**found, "from": str(directory)}
