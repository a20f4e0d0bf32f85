"""Training the ``linear`` router: class-weighted logistic regression (numpy, full-batch
gradient descent on standardized ``token_features``, folded back into raw-feature weights),
its threshold chosen on a development part of the labels for a stated recall of the positive
(divergent) class, and precision/recall of it and the threshold-only routers on held-out labels,
each at its own threshold chosen on the same development part for the same recall.

Splits are by question (a question's tokens are never in two parts).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from a2r_graph.r2r.routers import (
    FEATURES_BEYOND_TOP_K,
    LinearRouter,
    TokenChoice,
    token_features,
    top1_probability,
    topk_entropy,
)

Example = tuple[TokenChoice, int]
FEATURE_NAMES = ("entropy", "top1_prob", "sampled_logprob", "is_top1", "log1p_position")


class TrainingError(ValueError):
    """The labels cannot train a router; the message says what to change."""


@dataclass(frozen=True)
class Split:
    train: list[Example]
    dev: list[Example]
    test: list[Example]


def split_by_question(
    questions: Sequence[list[Example]], seed: int = 0, dev: float = 0.2, test: float = 0.2
) -> Split:
    """The questions shuffled (``seed``) into train / dev / test parts; each part gets at least
    one question when there are three or more."""
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = max(1, round(n * test)) if n >= 3 else 0
    n_dev = max(1, round(n * dev)) if n >= 3 else 0
    parts = order[:n_test], order[n_test : n_test + n_dev], order[n_test + n_dev :]
    test_ex, dev_ex, train_ex = ([e for i in part for e in questions[i]] for part in parts)
    return Split(train_ex, dev_ex, test_ex)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 2000, rate: float = 0.5
) -> tuple[np.ndarray, float]:
    """Weights and bias on the raw features of a class-weighted (balanced) logistic
    regression: each class weighs half the loss whatever its count."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    z = (x - mean) / std
    positives = float(y.sum())
    sample_weight = np.where(y == 1, 0.5 / positives, 0.5 / (len(y) - positives))
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(z @ w + b, -500, 500)))
        g = sample_weight * (p - y)
        w -= rate * (z.T @ g + l2 * w)
        b -= rate * float(g.sum())
    raw = w / std
    return raw, float(b - (raw * mean).sum())


def threshold_for_recall(scores: np.ndarray, y: np.ndarray, recall: float) -> float:
    """A threshold t such that flagging ``score > t`` keeps at least ``recall`` of the
    positives, and no token more than needed: halfway between the lowest positive that must be
    kept and the next lower score of any token (a margin for unseen tokens)."""
    positives = np.sort(scores[y == 1])
    if not len(positives):
        raise TrainingError("no positive (divergent) label to set a threshold on")
    keep = math.ceil(recall * len(positives) - 1e-9)
    lowest = positives[len(positives) - keep]
    below = scores[scores < lowest]
    if not len(below):
        return float(np.nextafter(lowest, -np.inf))
    return float((lowest + below.max()) / 2)


def precision_recall(flags: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, share of tokens flagged); precision 0 when nothing is flagged."""
    hits = float((flags & (y == 1)).sum())
    return (
        hits / flags.sum() if flags.sum() else 0.0,
        hits / y.sum() if y.sum() else 0.0,
        float(flags.mean()) if len(flags) else 0.0,
    )


@dataclass(frozen=True)
class RouterScore:
    """How a router is scored: higher flags; and its run-time threshold from a score one."""

    score: Callable[[TokenChoice], float]
    to_threshold: Callable[[float], float]


def _scorers(router: LinearRouter) -> dict[str, RouterScore]:
    def linear(token: TokenChoice) -> float:
        features = token_features(token, router.top_k)
        s = sum(w * x for w, x in zip(router.weights, features, strict=True)) + router.bias
        return 1 / (1 + math.exp(-max(min(s, 500.0), -500.0)))

    return {
        "linear": RouterScore(linear, lambda t: t),
        "entropy": RouterScore(lambda token: topk_entropy(token.top), lambda t: t),
        # top1 flags p < threshold: score -p > t  <=>  p < -t
        "top1": RouterScore(lambda token: -top1_probability(token), lambda t: -t),
    }


@dataclass(frozen=True)
class Evaluation:
    name: str
    threshold: float
    dev_recall: float
    precision: float
    recall: float
    flagged: float


@dataclass(frozen=True)
class Trained:
    router: LinearRouter
    evaluations: list[Evaluation]
    counts: dict[str, int]


def _labels(examples: list[Example]) -> np.ndarray:
    return np.array([label for _, label in examples], dtype=float)


def train_router(
    questions: Sequence[list[Example]], top_k: int, recall: float = 0.95, seed: int = 0
) -> Trained:
    """A ``LinearRouter`` from per-question examples, its threshold set on the dev part for
    ``recall``, and the linear, entropy and top1 routers scored on the test part."""
    if not 0 < recall <= 1:
        raise TrainingError(f"recall must be in (0, 1], not {recall}")
    if len(questions) < 3:
        raise TrainingError(
            f"{len(questions)} question(s) labelled: train, dev and test need 3 or more"
        )
    split = split_by_question(questions, seed)
    parts = {"train": split.train, "dev": split.dev, "test": split.test}
    for name, examples in parts.items():
        if not any(label for _, label in examples):
            raise TrainingError(
                f"the {name} part has no divergent label ({len(examples)} tokens): label more "
                "questions (--size), judge more candidates (--judge-per-question) or count "
                "unjudged candidates (--unjudged divergent)"
            )
    x = np.array([token_features(t, top_k) for t, _ in split.train])
    weights, bias = fit_logistic(x, _labels(split.train))
    router = LinearRouter(tuple(float(w) for w in weights), bias, 0.5, top_k)
    evaluations = []
    for name, scorer in _scorers(router).items():
        dev_scores = np.array([scorer.score(t) for t, _ in split.dev])
        y_dev = _labels(split.dev)
        t = threshold_for_recall(dev_scores, y_dev, recall)
        test_scores = np.array([scorer.score(t_) for t_, _ in split.test])
        precision, got, flagged = precision_recall(test_scores > t, _labels(split.test))
        dev_recall = float(precision_recall(dev_scores > t, y_dev)[1])
        evaluations.append(
            Evaluation(
                name, scorer.to_threshold(t), dev_recall, float(precision), float(got), flagged
            )
        )
    router = LinearRouter(router.weights, bias, evaluations[0].threshold, top_k)
    counts = {
        f"{name}_{what}": n
        for name, examples in parts.items()
        for what, n in (("tokens", len(examples)), ("positives", int(_labels(examples).sum())))
    }
    return Trained(router, evaluations, counts)


def write_router(trained: Trained, path: Path, recall: float, **about: Any) -> None:
    """The JSON file the ``linear`` router reads (``LinearRouter.load``), with what made it
    (extra keys the loader ignores)."""
    router = trained.router
    spec = {
        "top_k": router.top_k,
        "weights": list(router.weights),
        "bias": router.bias,
        "threshold": router.threshold,
        "features": [f"top{i + 1}_logprob" for i in range(router.top_k)] + list(FEATURE_NAMES),
        "recall_target": recall,
        "evaluation": [e.__dict__ for e in trained.evaluations],
        "counts": trained.counts,
        **about,
    }
    assert len(spec["features"]) == router.top_k + FEATURES_BEYOND_TOP_K
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def table(trained: Trained, recall: float) -> str:
    """The held-out precision/recall of each router, as text."""
    lines = [
        f"thresholds chosen on the dev part for recall >= {recall:.2f}; scored on the test part",
        f"{'router':<8} {'threshold':>10} {'dev recall':>10} {'precision':>9} {'recall':>7} "
        f"{'flagged':>8}",
    ]
    for e in trained.evaluations:
        lines.append(
            f"{e.name:<8} {e.threshold:>10.4g} {e.dev_recall:>10.3f} {e.precision:>9.3f} "
            f"{e.recall:>7.3f} {e.flagged:>8.3f}"
        )
    lines.append(", ".join(f"{k} {v}" for k, v in trained.counts.items()))
    return "\n".join(lines)
