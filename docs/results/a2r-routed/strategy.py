"""A2R over routed paths as a strategy ``a2r eval --graph`` (and every door) can run: each
explorer path is an R2R run over the explorer (SLM) and synthesizer (LLM) endpoints, the
synthesizer the synthesizer endpoint's model. Registered by ``run.sh`` with
``A2R_STRATEGIES=strategy:A2R_ROUTED`` (this folder on ``PYTHONPATH``)."""

from dataclasses import replace
from functools import partial

from a2r_graph.graph import build_graph
from a2r_graph.r2r.chat_model import routed_explorer
from a2r_graph.serving.registry import A2R

A2R_ROUTED = replace(A2R, name="a2r-routed", build=partial(build_graph, routed_explorer()))
