"""The graph's nodes, one per file: dispatch (map), explore, decide, reduce, synthesize."""

from a2r_graph.nodes.decide import decide
from a2r_graph.nodes.dispatch import dispatch
from a2r_graph.nodes.explore import explore
from a2r_graph.nodes.reduce import reduce
from a2r_graph.nodes.synthesize import synthesize

__all__ = ["decide", "dispatch", "explore", "reduce", "synthesize"]
