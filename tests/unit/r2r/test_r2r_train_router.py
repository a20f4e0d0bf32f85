"""Training the linear router (a2r_graph/r2r/train_router.py): what it learns, the threshold
it sets for the recall asked, the file the run's ``linear`` router reads, and its refusals."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from a2r_graph.errors import ConfigurationError
from a2r_graph.r2r.routers import LinearRouter, TokenChoice, router_for
from a2r_graph.r2r.train_router import (
    TrainingError,
    threshold_for_recall,
    train_router,
    write_router,
)

TOP_K = 3


def token(top1: float, position: int) -> TokenChoice:
    rest = (1 - top1) / 2
    top = ((10, math.log(top1)), (11, math.log(rest)), (12, math.log(rest)))
    return TokenChoice(10, top[0][1], top, position)


def toy(questions=30, per_question=40, noise=0.0, seed=0):
    """Divergent tokens are unsure (top-1 0.3-0.5), the others sure (0.8-0.99); with
    ``noise``, that share of labels is flipped. About 1 in 8 tokens is divergent."""
    rng = random.Random(seed)
    out = []
    for _ in range(questions):
        examples = []
        for position in range(per_question):
            divergent = rng.random() < 0.125
            p = rng.uniform(0.3, 0.5) if divergent else rng.uniform(0.8, 0.99)
            label = int(divergent) ^ int(rng.random() < noise)
            examples.append((token(p, position), label))
        out.append(examples)
    return out


def test_a_separable_set_is_learned():
    """Catches: a trainer that does not learn (weights left at zero, the class weights
    inverted so the rare positives are ignored, standardization not folded back into the
    file's raw-feature weights)."""
    trained = train_router(toy(), TOP_K, recall=1.0)
    by_name = {e.name: e for e in trained.evaluations}
    assert by_name["linear"].recall == 1.0 and by_name["linear"].precision == 1.0
    router = trained.router
    assert router.flags(token(0.4, 5)) and not router.flags(token(0.95, 5))


def test_the_threshold_meets_the_recall_on_the_dev_part():
    """Catches: a threshold set off by one positive (recall just under the target), or set on
    the training part (no held-out check of the recall the run relies on)."""
    trained = train_router(toy(noise=0.1), TOP_K, recall=0.9)
    for evaluation in trained.evaluations:
        assert evaluation.dev_recall >= 0.9
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.8])
    labels = np.array([1, 1, 1, 1, 0, 0])
    assert threshold_for_recall(scores, labels, 0.75) == pytest.approx(0.15)  # 3 of 4 kept
    assert threshold_for_recall(scores, labels, 1.0) < 0.1


def test_the_file_round_trips_into_the_linear_router(tmp_path):
    """Catches: a file the run's loader refuses or reads differently (weights in another order,
    the threshold of another router, top_k lost): the router a run loads must decide as the
    trained one does."""
    trained = train_router(toy(noise=0.05), TOP_K)
    path = tmp_path / "router.json"
    write_router(trained, path, 0.95, models={"slm": "a", "llm": "b"})
    loaded = router_for("linear", None, path)
    assert loaded == trained.router
    tokens = [t for q in toy(questions=3, seed=9) for t, _ in q]
    assert [loaded.flags(t) for t in tokens] == [trained.router.flags(t) for t in tokens]
    assert json.loads(path.read_text())["evaluation"][0]["name"] == "linear"


def test_a_file_missing_fields_is_refused(tmp_path):
    """Catches: a truncated or hand-edited router file loading as a router with defaults."""
    path = tmp_path / "router.json"
    write_router(train_router(toy(), TOP_K), path, 0.95)
    spec = json.loads(path.read_text())
    del spec["bias"]
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigurationError, match="bias"):
        LinearRouter.load(path)


def test_labels_that_cannot_train_are_refused():
    """Catches: a router trained and thresholded on no positive (a threshold of nothing), or on
    too few questions for held-out figures."""
    with pytest.raises(TrainingError, match="3 or more"):
        train_router(toy(questions=2), TOP_K)
    negatives = [[(t, 0) for t, _ in q] for q in toy(questions=6)]
    with pytest.raises(TrainingError, match="no divergent label"):
        train_router(negatives, TOP_K)
    with pytest.raises(TrainingError, match="recall"):
        train_router(toy(), TOP_K, recall=1.5)
