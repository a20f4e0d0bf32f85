"""The routers' decisions from top-k logprobs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from a2r_graph.errors import ConfigurationError
from a2r_graph.r2r.context import R2RSettings
from a2r_graph.r2r.routers import (
    FEATURES_BEYOND_TOP_K,
    ROUTERS,
    EntropyRouter,
    TokenChoice,
    Top1Router,
    router_for,
    token_features,
    topk_entropy,
)


def choice(*probs: float, position: int = 0) -> TokenChoice:
    top = tuple((7 + i, math.log(p)) for i, p in enumerate(probs))
    return TokenChoice(id=7, logprob=top[0][1], top=top, position=position)


def test_topk_entropy_is_the_entropy_when_the_top_k_hold_all_the_mass():
    """Catches: an entropy on another base or sign (a threshold of 0.45 nats would mean
    something else)."""
    assert topk_entropy(choice(0.5, 0.5).top) == pytest.approx(math.log(2))
    assert topk_entropy(choice(1.0).top) == pytest.approx(0.0)


def test_topk_entropy_counts_the_mass_outside_the_top_k():
    """Catches: a router blind to a flat distribution whose top-k hold little mass (its
    top-k terms alone would read as confident)."""
    flat = choice(0.05, 0.05)
    head = -2 * 0.05 * math.log(0.05)
    assert topk_entropy(flat.top) == pytest.approx(head + 0.9 * -math.log(0.05))
    assert topk_entropy(flat.top) > head + 2


@pytest.mark.parametrize(
    ("probs", "flagged"),
    [((0.98, 0.01, 0.01), False), ((0.4, 0.35, 0.25), True), ((0.9, 0.1), False)],
)
def test_entropy_router_flags_uncertain_tokens_at_r2rs_threshold(probs, flagged):
    """Catches: the entropy router flagging confident tokens (the LLM would write them all)
    or missing the uncertain ones."""
    router = router_for("entropy")
    assert router.threshold == 0.45
    assert router.flags(choice(*probs)) is flagged


def test_top1_router_flags_below_its_threshold():
    """Catches: the top-1 router comparing the wrong way round or on the sampled token's
    probability instead of the top-1's."""
    router = Top1Router(0.5)
    assert router.flags(choice(0.45, 0.3, 0.25))
    assert not router.flags(choice(0.55, 0.45))
    sampled_second = TokenChoice(id=8, logprob=math.log(0.3), top=choice(0.7, 0.3).top, position=0)
    assert not router.flags(sampled_second)


def test_a_router_is_chosen_by_name_with_the_runs_threshold():
    """Catches: a run's threshold ignored, or an unknown router name accepted."""
    assert router_for("entropy", 1.2) == EntropyRouter(1.2)
    assert R2RSettings(router="top1", threshold=0.2).make_router() == Top1Router(0.2)
    with pytest.raises(ConfigurationError, match="choose one of entropy, linear, top1"):
        router_for("hidden-states")
    with pytest.raises(ValueError, match="no router called 'mlp'"):
        R2RSettings(router="mlp")
    assert set(ROUTERS) == {"entropy", "linear", "top1"}


def test_token_features_have_a_fixed_width_whatever_k_the_server_gave():
    """Catches: a trained router's input changing width when a server returns fewer
    candidates than asked (the end of the vocabulary, a capped --max-logprobs)."""
    short, full = choice(0.9, 0.1), choice(0.5, 0.2, 0.1, 0.1, 0.1, position=12)
    assert len(token_features(short, 5)) == len(token_features(full, 5)) == 10
    features = token_features(full, 5)
    assert features[5] == pytest.approx(topk_entropy(full.top))
    assert features[6] == pytest.approx(0.5) and features[8] == 1.0
    assert features[9] == pytest.approx(math.log1p(12))


def entropy_as_linear(tmp_path, **changes) -> Path:
    """A linear router file equivalent to the entropy router at 0.45 nats."""
    weights = [0.0] * (3 + FEATURES_BEYOND_TOP_K)
    weights[3] = 10.0  # the top-k entropy
    spec = {"top_k": 3, "weights": weights, "bias": -4.5, "threshold": 0.5} | changes
    path = tmp_path / "router.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_trained_linear_router_is_read_from_its_file(tmp_path):
    """Catches: a router file whose weights are read in another order than token_features,
    or a run's threshold that does not override the file's."""
    router = R2RSettings(router="linear", router_file=entropy_as_linear(tmp_path)).make_router()
    assert router.flags(choice(0.4, 0.35, 0.25)) and not router.flags(choice(0.98, 0.01, 0.01))
    strict = R2RSettings(router="linear", router_file=entropy_as_linear(tmp_path), threshold=0.999)
    assert not strict.make_router().flags(choice(0.4, 0.35, 0.25))


def test_a_bad_router_file_is_refused_when_the_settings_are_made(tmp_path):
    """Catches: a router file found wrong only mid-run, after the SLM's tokens were paid."""
    with pytest.raises(ValueError, match="4 weights for top_k 3: it needs top_k \\+ 5"):
        R2RSettings(router="linear", router_file=entropy_as_linear(tmp_path, weights=[1] * 4))
    with pytest.raises(ValueError, match="set r2r.router_file"):
        R2RSettings(router="linear")
    with pytest.raises(ValueError, match="router_file is the linear router's"):
        R2RSettings(router="entropy", router_file=entropy_as_linear(tmp_path))
    with pytest.raises(ValueError, match="No such file"):
        R2RSettings(router="linear", router_file=tmp_path / "missing.json")
