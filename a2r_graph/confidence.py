"""DeepConf's path confidence (arXiv 2508.15260) from a completion's top-k logprobs.

A token's confidence is the negative mean log-probability of the server's top-k candidates
at that position: high when the model was sure (one candidate took the mass, the others are
far below), low where it hesitated. A path is summarized three ways:

- ``mean``: the mean token confidence over the whole completion;
- ``lowest_group``: the lowest mean over any ``group_size`` consecutive tokens (the weakest
  stretch of reasoning; the whole path's mean when it is shorter);
- ``tail``: the mean over the last ``tail_tokens`` tokens (where the answer is written).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import Any, Literal, TypeGuard

from typing_extensions import TypedDict

Measure = Literal["mean", "lowest_group", "tail"]
MEASURES: tuple[Measure, ...] = ("mean", "lowest_group", "tail")


class PathConfidence(TypedDict):
    """A path's confidence measures (higher: surer), and how many tokens they cover."""

    mean: float
    lowest_group: float
    tail: float
    tokens: int


def token_confidences(logprobs: Any) -> list[float]:
    """Per generated token, -mean(top-k logprobs), from an OpenAI-style ``logprobs`` object
    (``{"content": [{"logprob": ..., "top_logprobs": [{"logprob": ...}, ...]}, ...]}``).
    A token without candidates counts its own logprob; masked candidates (vLLM's -9999.0)
    and unreadable entries are skipped (a server reply is untrusted input)."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    confidences = []
    for entry in content if isinstance(content, list) else []:
        if not isinstance(entry, dict):
            continue
        top = entry.get("top_logprobs")
        candidates = (
            [c.get("logprob") for c in top if isinstance(c, dict)] if isinstance(top, list) else []
        )
        values: list[float] = [v for v in candidates if _is_logprob(v)] or (
            [entry["logprob"]] if _is_logprob(entry.get("logprob")) else []
        )
        if values:
            confidences.append(-sum(values) / len(values))
    return confidences


def path_confidence(
    confidences: Sequence[float], group_size: int, tail_tokens: int
) -> PathConfidence | None:
    """The three measures over a path's token confidences; None when there are none."""
    if not confidences:
        return None
    n = len(confidences)
    sums = [0.0, *accumulate(confidences)]
    window = min(group_size, n)
    lowest = min(sums[i + window] - sums[i] for i in range(n - window + 1)) / window
    tail = min(tail_tokens, n)
    return PathConfidence(
        mean=round(sums[n] / n, 4),
        lowest_group=round(lowest, 4),
        tail=round((sums[n] - sums[n - tail]) / tail, 4),
        tokens=n,
    )


def _is_logprob(value: Any) -> TypeGuard[float]:
    # vLLM sends -9999.0 for -inf (a candidate that structured output or a logits processor
    # masked): not the model's doubt, so it is left out, like anything not a float <= 0
    return isinstance(value, int | float) and not isinstance(value, bool) and -9999 < value <= 0
