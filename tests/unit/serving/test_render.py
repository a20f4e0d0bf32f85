"""How a result reads at the doors (a2r_graph.serving.render): A2R's and any other strategy's."""

from __future__ import annotations

from a2r_graph.serving.render import openai_usage, report, summary, tool_text
from tests.fakes import RUN_OUTPUT

OTHER = {  # another strategy's result: no paths, no synthesis, its own stages
    "question": "q",
    "answer": "written \\boxed{4}",
    "boxed_answer": "4",
    "usage": {
        "total": {"calls": 3, "input_tokens": 9, "output_tokens": 7, "cost": 0.5},
        "slm": {"calls": 2, "input_tokens": 6, "output_tokens": 5, "cost": 0.1},
        "llm": {"calls": 1, "input_tokens": 3, "output_tokens": 2, "cost": 0.4},
    },
}


def test_a2r_ask_reports_paths_for_a2r_and_every_stage_of_any_strategy_total_last():
    """Catches: a report that assumes A2R's stages (a KeyError on another strategy's result),
    or loses A2R's failed path."""
    a2r = report(RUN_OUTPUT, 1.0)
    assert "Explorers: 1/2 usable" in a2r and "[2] FAILED: HTTP 500" in a2r
    assert "Synthesizer answer:" in a2r and "Final answer: 5" in a2r
    other = report(OTHER, 2.5)
    stages = [
        line.split()[0] for line in other.splitlines() if line[:4] in ("slm ", "llm ", "tota")
    ]
    assert stages == ["slm", "llm", "total"] and "Answer:\n  written" in other
    assert "Explorers" not in other and other.endswith("wall time: 2.5 s")


def test_traces_only_on_request_and_the_same_figures_at_every_door():
    """Catches: traces leaking into the default tool text (thousands of tokens for the calling
    model), or a door whose cost disagrees with the run's total."""
    assert "long trace" not in tool_text(RUN_OUTPUT) and "long trace" not in str(
        summary(RUN_OUTPUT)
    )
    assert "long trace" in tool_text(RUN_OUTPUT, include_traces=True)
    assert summary(RUN_OUTPUT, include_traces=True)["synthesis_trace"] == "thinking"
    assert summary(OTHER)["cost"] == openai_usage(OTHER)["cost"] == 0.5
    assert openai_usage(OTHER)["total_tokens"] == 16 and summary(OTHER)["paths"] == []


def test_a_voted_answer_says_so_at_every_door():
    """Catches: a vote's answer presented as the synthesizer's (a2r ask's heading), or the
    aggregator lost from the structured result (MCP, the OpenAI reply's a2r)."""
    why = "'5' holds 2 of 3 usable paths"
    voted = RUN_OUTPUT | {
        "synthesis": None,
        "decisions": {"aggregation": {"by": "vote", "why": why, "vote": {"paths": [0, 2]}}},
    }
    printed = report(voted, 1.0)
    assert f"Answered by vote: {why}; no synthesis" in printed
    assert "Synthesizer answer:" not in printed
    assert summary(voted)["aggregation"] == {"by": "vote", "why": why}
    assert "aggregation" not in summary(OTHER)
