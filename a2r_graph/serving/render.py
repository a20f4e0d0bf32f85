"""How a finished run reads at each door, for any strategy's result (``question``,
``answer``, ``boxed_answer``, ``usage`` per stage and ``total``; A2R adds its ``paths`` and
``synthesis``, R2-Reasoner its ``plan`` and ``subtasks``):

- ``tool_text``: what a model reads from a tool (LangChain's ``as_tool``, MCP's text);
- ``summary``: the structured figures (MCP's ``structuredContent``, the OpenAI reply's ``a2r``);
- ``openai_usage``: OpenAI's ``usage``, over every model call;
- ``report``: what ``a2r ask`` prints.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any


def tool_text(output: Mapping[str, Any], include_traces: bool = False) -> str:
    """The final answer, then the answer's text; with ``include_traces`` every path's and the
    synthesizer's reasoning too."""
    final = output.get("boxed_answer") or "(no boxed answer)"
    text = f"Final answer: {final}\n\nReasoning:\n{output.get('answer') or ''}"
    if include_traces:
        attempts = [
            f"[attempt {p['index'] + 1}] boxed: {p.get('boxed')}\n{p.get('trace') or ''}"
            for p in output.get("paths") or []
        ]
        text += "\n\nAttempts' reasoning:\n" + "\n\n".join(attempts)
        if synthesis_trace := _synthesis_trace(output):
            text += f"\n\nSynthesizer's reasoning:\n{synthesis_trace}"
    return text


def summary(output: Mapping[str, Any], include_traces: bool = False) -> dict[str, Any]:
    """The boxed answer, the answer, the cost, usage per stage, each path's answer, which
    aggregator answered and why (A2R) and, with ``include_traces``, every trace."""
    usage = output.get("usage") or {}
    paths = []
    for path in output.get("paths") or []:
        item = {"index": path["index"], "boxed": path.get("boxed"), "error": path.get("error")}
        paths.append(item | ({"trace": path.get("trace") or ""} if include_traces else {}))
    figures = {
        "boxed_answer": output.get("boxed_answer"),
        "answer": output.get("answer") or "",
        "cost": (usage.get("total") or {}).get("cost", 0.0),
        "usage": usage,
        "paths": paths,
    }
    if "subtasks" in output:
        figures["plan"] = output.get("plan")
        figures["subtasks"] = [
            {key: subtask.get(key) for key in SUBTASK_FIGURES} for subtask in output["subtasks"]
        ]
    if aggregation := (output.get("decisions") or {}).get("aggregation"):
        figures["aggregation"] = {"by": aggregation.get("by"), "why": aggregation.get("why")}
    return figures | ({"synthesis_trace": _synthesis_trace(output)} if include_traces else {})


SUBTASK_FIGURES = ("id", "task", "depends_on", "tier", "escalations", "result")


def openai_usage(output: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's ``usage``, over every model call of the run, with its cost."""
    total = (output.get("usage") or {}).get("total") or {}
    prompt, completion = total.get("input_tokens", 0), total.get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": total.get("cost", 0.0),
    }


def report(output: Mapping[str, Any], wall_s: float, show_traces: bool = False) -> str:
    """``a2r ask``'s printout: the question, A2R's paths and decisions (when the result has
    them), the answer, the final answer, usage per stage and the wall time."""
    out = [f"Question: {output['question']}", ""]
    if "paths" in output:
        out += _paths(output, show_traces)
    if "subtasks" in output:
        out += _subtasks(output)
    aggregation = (output.get("decisions") or {}).get("aggregation") or {}
    if (output.get("decisions") or {}).get("shortcut"):
        agreed = output["decisions"].get("agreed") or {"paths": []}
        out += [f"Shortcut: paths {[i + 1 for i in agreed['paths']]} agree; no synthesis"]
    elif aggregation.get("by") in ("vote", "weighted_vote"):
        out += [f"Answered by {aggregation['by']}: {aggregation.get('why')}; no synthesis"]
    else:
        if aggregation.get("by") == "synthesizer" and "vote" in aggregation:
            out += [f"Synthesized: {aggregation.get('why')}"]
        heading = "Synthesizer answer:" if "synthesis" in output else "Answer:"
        out += [heading, textwrap.indent(output.get("answer") or "(empty)", "  ")]
    final = output.get("boxed_answer") or r"(no \boxed{} in the answer)"
    out += ["", f"Final answer: {final}", "", _usage_table(output["usage"])]
    return "\n".join(out) + f"\n\nwall time: {wall_s:.1f} s"


def _paths(output: Mapping[str, Any], show_traces: bool) -> list[str]:
    paths, decisions = output["paths"], output.get("decisions") or {}
    usable = sum(path["error"] is None for path in paths)
    out = [f"Explorers: {usable}/{len(paths)} usable"]
    for path in paths:
        if path["error"] is not None:
            out.append(f"  [{path['index'] + 1}] FAILED: {path['error']}")
            continue
        out.append(
            f"  [{path['index'] + 1}] boxed: {path['boxed']!s:<12} {_snippet(path['answer'])}"
        )
        if show_traces and path["trace"]:
            out.append(textwrap.indent(path["trace"], "      | "))
    if len(waves := decisions.get("waves", [])) > 1 or decisions.get("budget_reached"):
        out.append(f"Waves: {' then '.join(str([i + 1 for i in w]) for w in waves)}")
    if reached := decisions.get("budget_reached"):
        out.append(f"Budget reached: paths {[i + 1 for i in reached['skipped']]} not explored")
    if "references" in decisions:
        out.append(
            f"References: the most confident paths {[i + 1 for i in decisions['references']]}"
        )
    return [*out, ""]


def _subtasks(output: Mapping[str, Any]) -> list[str]:
    plan = output.get("plan") or {}
    out = [f"Plan: {plan.get('status')}, {len(output['subtasks'])} subtasks"]
    out += [f"  refused: {error}" for error in plan.get("errors") or []]
    for subtask in output["subtasks"]:
        escalated = f" (escalated {subtask['escalations']}x)" if subtask["escalations"] else ""
        out.append(
            f"  [{subtask['id']}] {subtask['tier']:<8} result: {subtask['result']!s:<10} "
            f"{_snippet(subtask['task'], 60)}{escalated}"
        )
    return [*out, ""]


def _usage_table(usage: Mapping[str, Any]) -> str:
    """Calls, tokens and cost per stage, ``total`` last."""
    rows = [f"{'stage':<12}{'calls':>6}{'input tokens':>15}{'output tokens':>15}{'cost':>12}"]
    for stage in sorted(usage, key=lambda stage: stage == "total"):
        row = usage[stage]
        rows.append(
            f"{stage:<12}{row['calls']:>6}{row['input_tokens']:>15}"
            f"{row['output_tokens']:>15}{row['cost']:>12.6f}"
        )
    return "\n".join(rows)


def _snippet(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else "..." + flat[-(width - 3) :]


def _synthesis_trace(output: Mapping[str, Any]) -> str:
    return (output.get("synthesis") or {}).get("trace") or ""
