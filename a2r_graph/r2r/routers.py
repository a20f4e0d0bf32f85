"""Routers: which of the small model's tokens the large model should write instead.

A router sees one token the SLM sampled, as the server described it (``TokenChoice``: its id,
logprob, the top-k candidates, its position in the output) and answers whether to flag it.
Over an OpenAI-compatible API there are no hidden states: top-k logprobs and ids are all a
router gets. Routers are chosen by name (``R2RSettings.router``); ``ROUTERS`` maps each name
to a factory of the settings, so a trained router (e.g. one reading its weights from a small
file a run names) is one more entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
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


ROUTERS: dict[str, Callable[[float | None], Router]] = {
    "entropy": lambda threshold: EntropyRouter(0.45 if threshold is None else threshold),
    "top1": lambda threshold: Top1Router(0.5 if threshold is None else threshold),
}
"""The routers a run may name (``R2RSettings.router``), each from the run's threshold (None:
its default: R2R's 0.45 nats for the entropy, 0.5 for the top-1 probability)."""


def router_for(name: str, threshold: float | None = None) -> Router:
    """The router called ``name``, or ``ConfigurationError`` listing those there are."""
    if (factory := ROUTERS.get(name)) is None:
        raise ConfigurationError(
            f"no router called {name!r}: choose one of {', '.join(sorted(ROUTERS))}"
        )
    return factory(threshold)
