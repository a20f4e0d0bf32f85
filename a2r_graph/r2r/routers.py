"""Routers: which of the small model's tokens the large model should write instead.

A router sees one token the SLM sampled, as the server described it (``TokenChoice``: its id,
logprob, the top-k candidates, its position in the output) and answers whether to flag it.
Over an OpenAI-compatible API there are no hidden states: top-k logprobs and ids are all a
router gets. Routers are chosen by name (``R2RSettings.router``); ``ROUTERS`` maps each name
to a factory of the run's threshold and router file, so a trained router is one more entry.
``linear`` is the simplest: a logistic model over ``token_features`` read from a JSON file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from a2r_graph.errors import ConfigurationError


@dataclass(frozen=True)
class TokenChoice:
    """One token a model sampled, with what the server said about the alternatives."""

    id: int
    logprob: float | None
    """The sampled token's logprob (None when the server gave none)."""
    top: tuple[tuple[int, float], ...]
    """The top-k candidates as (token id, logprob), most likely first."""
    position: int
    """The token's index in the run's output (0: the first output token)."""


class Router(Protocol):
    """Decides, token by token, where the large model takes over."""

    @property
    def name(self) -> str: ...
    @property
    def threshold(self) -> float: ...

    def flags(self, token: TokenChoice) -> bool:
        """Whether the LLM should write this position instead of the SLM."""
        ...


def topk_entropy(top: tuple[tuple[int, float], ...]) -> float:
    """A lower bound of the SLM's entropy (nats) from its top-k logprobs alone: the top-k
    terms, plus the mass r outside them at the k-th probability at most (each tail token is
    no likelier than the k-th), which contributes at least r * -log p_k."""
    if not top:
        return 0.0
    probs = sorted((math.exp(logprob) for _, logprob in top), reverse=True)
    head = -sum(p * math.log(p) for p in probs if p > 0)
    tail = max(0.0, 1.0 - sum(probs))
    return head + (tail * -math.log(probs[-1]) if tail and probs[-1] > 0 else 0.0)


def top1_probability(token: TokenChoice) -> float:
    """The SLM's probability of its most likely candidate (the sampled one's without top-k)."""
    if token.top:
        return math.exp(max(logprob for _, logprob in token.top))
    return math.exp(token.logprob) if token.logprob is not None else 1.0


@dataclass(frozen=True)
class EntropyRouter:
    """Flags tokens whose top-k entropy is above ``threshold`` nats (R2R's training-free
    switch uses 0.45)."""

    threshold: float
    name: str = "entropy"

    def flags(self, token: TokenChoice) -> bool:
        return topk_entropy(token.top) > self.threshold


@dataclass(frozen=True)
class Top1Router:
    """Flags tokens whose top-1 probability is below ``threshold``."""

    threshold: float
    name: str = "top1"

    def flags(self, token: TokenChoice) -> bool:
        return top1_probability(token) < self.threshold


FEATURES_BEYOND_TOP_K = 5


def token_features(token: TokenChoice, top_k: int) -> list[float]:
    """What a trained router reads of a token: its top-k logprobs (padded with -100 to
    ``top_k``), the top-k entropy, the top-1 probability, the sampled token's logprob, whether
    it is the top-1, and its position (log-scaled). The id itself is left to the router."""
    logprobs = [logprob for _, logprob in token.top[:top_k]]
    logprobs += [-100.0] * (top_k - len(logprobs))
    sampled = token.logprob if token.logprob is not None else logprobs[0]
    is_top1 = float(bool(token.top) and token.top[0][0] == token.id)
    return [
        *logprobs,
        topk_entropy(token.top),
        top1_probability(token),
        sampled,
        is_top1,
        math.log1p(token.position),
    ]


@dataclass(frozen=True)
class LinearRouter:
    """Flags tokens whose probability of diverging, ``sigmoid(weights . token_features +
    bias)``, is above ``threshold``: a trained router's simplest form."""

    weights: tuple[float, ...]
    bias: float
    threshold: float
    top_k: int
    name: str = "linear"

    def flags(self, token: TokenChoice) -> bool:
        features = token_features(token, self.top_k)
        score = sum(w * x for w, x in zip(self.weights, features, strict=True)) + self.bias
        return 1 / (1 + math.exp(-max(min(score, 500.0), -500.0))) > self.threshold

    @classmethod
    def load(cls, path: Path, threshold: float | None = None) -> LinearRouter:
        """The router a JSON file describes: ``{"top_k": k, "weights": [k + 5 numbers],
        "bias": b, "threshold": t}`` (a run's threshold wins over the file's)."""
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            top_k, weights = int(spec["top_k"]), tuple(float(w) for w in spec["weights"])
            router = cls(weights, float(spec["bias"]), float(spec["threshold"]), top_k)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise ConfigurationError(
                f"router file {path}: {type(error).__name__}: {error}; it must be JSON "
                '{"top_k": k, "weights": [k + 5 numbers], "bias": b, "threshold": t}'
            ) from error
        if not 1 <= top_k <= 20 or len(weights) != top_k + FEATURES_BEYOND_TOP_K:
            raise ConfigurationError(
                f"router file {path}: {len(weights)} weights for top_k {top_k}: it needs "
                f"top_k + {FEATURES_BEYOND_TOP_K} (token_features), top_k 1-20"
            )
        return router if threshold is None else replace(router, threshold=threshold)


RouterFactory = Callable[[float | None, Path | None], Router]
"""Makes a router from a run's threshold (None: the router's default) and router file."""

ROUTERS: dict[str, RouterFactory] = {
    "entropy": lambda threshold, _: EntropyRouter(0.45 if threshold is None else threshold),
    "top1": lambda threshold, _: Top1Router(0.5 if threshold is None else threshold),
    "linear": lambda threshold, path: LinearRouter.load(_needs_file(path), threshold),
}
"""The routers a run may name (``R2RSettings.router``). Default thresholds: R2R's 0.45 nats
for the entropy, 0.5 for the top-1 probability, the file's for a trained router."""


def _needs_file(path: Path | None) -> Path:
    if path is None:
        raise ConfigurationError(
            "the linear router reads its weights from a file: set r2r.router_file "
            "(A2R_R2R__ROUTER_FILE)"
        )
    return path


def router_for(name: str, threshold: float | None = None, path: Path | None = None) -> Router:
    """The router called ``name``, or ``ConfigurationError`` listing those there are."""
    if (factory := ROUTERS.get(name)) is None:
        raise ConfigurationError(
            f"no router called {name!r}: choose one of {', '.join(sorted(ROUTERS))}"
        )
    return factory(threshold, path)
