"""The policies of ``A2RContext``, judged on one problem's saved samples (no new explorer call).

At N (the largest reported), over the first N paths and the syntheses the eval already ran:

- ``shortcut``, ``shortcut_75``: the agreeing answer when all (at least 75% of) the paths
  agree, the synthesis at N otherwise; no synthesis cost when taken;
- ``waves``: waves [N/2] (needs N/2 among ``--ns``): the synthesis at N/2 when the first N/2
  paths agree, else at N, with only the explored paths' cost;
- ``waves_shortcut``: waves [N/2] with the shortcut: no synthesis when either wave agrees;
- ``top_references`` (confidence on): one more synthesis, over the N/2 most confident paths;
- ``vote_first``: the vote when one answer alone holds the most paths (at least
  ``VoteFirst``'s 2), the synthesis at N otherwise (``synthesis_mode="vote_first"``);
- ``cons_weighted``, ``cons_top50`` (confidence on): DeepConf's baselines, confidence-weighted
  voting over all N paths and over the most confident half;
- ``VARIANTS`` (``a2r eval --variants``): synthesis options, one more synthesis each.

Each uses the graph's own decision functions (``a2r_graph.policies``), so the replay is the
graph's behaviour on these samples.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from a2r_graph.context import (
    A2RContext,
    Agreement,
    ConfidenceConfig,
    PromptTexts,
    ReferenceOptions,
    VoteFirst,
)
from a2r_graph.eval.metrics import majority_vote
from a2r_graph.eval.results import PolicyCell, SavedPath, Synthesis, Usage
from a2r_graph.policies import agreement, confidence_of, most_confident, vote, vote_decides
from a2r_graph.prompts import packaged_prompt

POLICIES = {
    "shortcut": "shortcut (all agree)",
    "shortcut_75": "shortcut (>= 75% agree)",
    "vote_first": "vote first (synthesize on a tie or a weak lead)",
    "waves": "waves [N/2]",
    "waves_shortcut": "waves [N/2] + shortcut",
    "top_references": "top N/2 references",
    "cons_weighted": "Cons@N, confidence-weighted",
    "cons_top50": "Cons@N, top 50% confident",
    "alone_a2r": "synthesizer's model in both stages (A2R over its --alone samples)",
}
"""Replayed policies: key -> label in the table and the plot (``alone_a2r``: with ``--alone K``,
one more synthesis, over the synthesizer's own K samples)."""

Update = Callable[[A2RContext], dict[str, Any]]


def _greedy(context: A2RContext) -> dict[str, Any]:
    return {"synthesizer": context.synthesizer.model_copy(update={"temperature": 0.0})}


VARIANTS: dict[str, tuple[str, dict[str, Any] | Update]] = {
    "tally": ("references + answer tally", {"references": ReferenceOptions(tally=True)}),
    "grouped": ("references grouped by answer", {"references": ReferenceOptions(order="grouped")}),
    "dedupe": ("one reference per answer", {"references": ReferenceOptions(dedupe=True)}),
    "grouped_tally": (
        "grouped + tally",
        {"references": ReferenceOptions(order="grouped", tally=True)},
    ),
    "select": ("select mode (GenSelect)", {"synthesis_mode": "select"}),
    "solve_first": (
        "solve first, then check the references",
        {"prompts": PromptTexts(synthesizer=packaged_prompt("synthesizer_solve_first"))},
    ),
    "greedy": ("synthesizer at temperature 0", _greedy),
}
"""Synthesis options ``a2r eval --variants`` judges: one more synthesis each, over the same
first N paths. Key -> (label, the ``A2RContext`` fields it sets, or a function of the context
that returns them)."""


def variant_context(context: A2RContext, variant: str) -> A2RContext:
    """``context`` with ``variant``'s fields set."""
    update = VARIANTS[variant][1]
    return context.model_copy(update=update(context) if callable(update) else update)


Equivalent = Callable[[str, str | None], Awaitable[bool]]
Synthesize = Callable[[list[dict[str, Any]]], Awaitable[dict[str, Any]]]


async def replay(
    paths: list[SavedPath],
    by_n: dict[str, Synthesis],
    n: int,
    gold: str,
    equivalent: Equivalent,
    confidence: ConfidenceConfig | None,
    synthesize: Synthesize,
) -> dict[str, PolicyCell]:
    """Each policy's answer, correctness and usage on this problem (see the module's doc)."""
    # the graph's decision functions read its own paths: plain dicts
    first = [path.model_dump() for path in paths[:n]]
    explored = Usage.total(p["usage"] for p in first)
    full = by_n[str(n)]
    synthesized_at_n = Answer(full.a2r_boxed, Usage.total([explored, full.synthesize_usage]))
    answers: dict[str, Answer] = {}

    def usable(subset: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for p in subset if p["error"] is None]

    def agreed(subset: list[dict[str, Any]], rule: Agreement) -> str | None:
        found = agreement(usable(subset), rule, confidence) if usable(subset) else None
        return None if found is None else found["boxed"]

    for name, rule in (("shortcut", Agreement()), ("shortcut_75", Agreement(min_share=0.75))):
        answer = agreed(first, rule)
        answers[name] = (
            Answer(answer, explored, shortcut=True) if answer is not None else synthesized_at_n
        )
    found = vote(usable(first))
    answers["vote_first"] = (
        Answer(found["boxed"], explored, shortcut=True)
        if found is not None and vote_decides(found, len(usable(first)), VoteFirst())
        else synthesized_at_n
    )
    half = n // 2
    if half >= 1 and str(half) in by_n:
        wave = first[:half]
        answer = agreed(wave, Agreement())
        wave_usage = Usage.total(p["usage"] for p in wave)
        if answer is None:
            answers["waves"] = synthesized_at_n
            answers["waves_shortcut"] = answers["shortcut"]
        else:
            cell = by_n[str(half)]
            answers["waves"] = Answer(
                cell.a2r_boxed, Usage.total([wave_usage, cell.synthesize_usage])
            )
            answers["waves_shortcut"] = Answer(answer, wave_usage, shortcut=True)
    if confidence is not None and half >= 1:
        measure = confidence.measure
        top = most_confident(usable(first), half, measure)
        if top:
            synthesis = await synthesize(top)
            answers["top_references"] = Answer(
                synthesis["boxed_answer"],
                Usage.total([explored, synthesis["synthesis"]["usage"]]),
                references=[p["index"] for p in top],
            )
        weights = [confidence_of(p, measure) or 0.0 for p in first]
        answers["cons_weighted"] = Answer(
            await majority_vote([p["boxed"] for p in first], equivalent, weights), explored
        )
        kept = most_confident(usable(first), max(1, -(-len(usable(first)) // 2)), measure)
        answers["cons_top50"] = Answer(
            await majority_vote(
                [p["boxed"] for p in kept],
                equivalent,
                [confidence_of(p, measure) or 0.0 for p in kept],
            ),
            explored,
        )
    return {
        name: PolicyCell(
            boxed=answer.boxed,
            usage=answer.usage,
            correct=await equivalent(gold, answer.boxed),
            shortcut=answer.shortcut,
            references=answer.references,
        )
        for name, answer in answers.items()
    }


@dataclass(frozen=True)
class Answer:
    """A policy's answer on one problem and what it cost, before it is judged."""

    boxed: str | None
    usage: Usage
    shortcut: bool = False
    references: list[int] | None = None
