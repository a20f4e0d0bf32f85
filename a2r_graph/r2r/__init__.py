"""R2R (arXiv 2505.21600) routed decoding over two OpenAI-compatible servers: the small model
(the explorer endpoint) writes, a router flags the tokens where the large model (the
synthesizer endpoint) should write instead.

    routers.py   which SLM tokens to flag, from top-k logprobs (``entropy``, ``top1``)
    client.py    token-level calls to one server (vLLM or llama.cpp)
    context.py   ``R2RContext``: endpoints, retries, ``A2R_R2R__*`` routing settings
    prepare.py   the shared-tokenizer check, the chat prompt as token ids
    loop.py      one step: an SLM segment up to its first flagged token, the LLM's tokens
    graph.py     ``build_r2r_graph``: start -> step (loop, checkpointed) -> finish

Public names load on first use (PEP 562): ``a2r_graph.r2r.routers`` alone imports no LangGraph.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from a2r_graph.r2r.context import R2RContext, R2RSettings
    from a2r_graph.r2r.graph import build_r2r_graph
    from a2r_graph.r2r.routers import ROUTERS, Router, TokenChoice, router_for
    from a2r_graph.r2r.state import R2RInput, R2ROutput

_EXPORTS = {
    "R2RContext": "a2r_graph.r2r.context",
    "R2RSettings": "a2r_graph.r2r.context",
    "build_r2r_graph": "a2r_graph.r2r.graph",
    "ROUTERS": "a2r_graph.r2r.routers",
    "Router": "a2r_graph.r2r.routers",
    "TokenChoice": "a2r_graph.r2r.routers",
    "router_for": "a2r_graph.r2r.routers",
    "R2RInput": "a2r_graph.r2r.state",
    "R2ROutput": "a2r_graph.r2r.state",
}
__all__ = [
    "ROUTERS",
    "R2RContext",
    "R2RInput",
    "R2ROutput",
    "R2RSettings",
    "Router",
    "TokenChoice",
    "build_r2r_graph",
    "router_for",
]


def __getattr__(name: str) -> Any:
    if (module := _EXPORTS.get(name)) is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
