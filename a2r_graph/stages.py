"""The stages of an A2R run, listed once, in run order.

Each stage is a graph node (and its span). The ones that call a model also name the
``A2RContext`` field of their endpoint and own a key in a run's ``usage``: the CLI's flags and
usage table, the server's run options, the spans and the eval's token columns iterate these
lists. A new stage is an entry here, its node module, and its edges in ``graph.py``.
"""

from __future__ import annotations

from typing import NamedTuple

GRAPH = "a2r"
"""The graph's name: its graph id on LangGraph Server, its model and tool names at every door,
and the workflow its spans trace."""


class Stage(NamedTuple):
    node: str
    """The graph node, the name of its span, and (for a model stage) its ``usage`` key."""
    model: str | None = None
    """The ``A2RContext`` field of the model it calls (``a2r.stage`` on that model's call
    spans and metrics); None: it calls no model."""


EXPLORE = Stage("explore", model="explorer")
REDUCE = Stage("reduce")
SYNTHESIZE = Stage("synthesize", model="synthesizer")
STAGES = (EXPLORE, REDUCE, SYNTHESIZE)

MODEL_STAGES = tuple(stage for stage in STAGES if stage.model)
ENDPOINTS = tuple(str(stage.model) for stage in MODEL_STAGES)
"""``("explorer", "synthesizer")``: the ``A2RContext`` fields of the stages' models."""
USAGE_KEYS = tuple(stage.node for stage in MODEL_STAGES)
"""``("explore", "synthesize")``: a run's per-stage ``usage`` keys (beside ``total``)."""
