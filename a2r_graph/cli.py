"""``a2r``: run A2R from the command line (a thin layer over ``a2r_graph.graph``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
import time
from typing import Any

from pydantic import ValidationError

from a2r_graph.context import A2RContext
from a2r_graph.errors import A2RError, describe_validation_error
from a2r_graph.graph import graph
from a2r_graph.state import A2ROutput


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2r",
        description="A2R: N explorer paths in parallel, then one synthesizer over their answers. "
        "Unset options come from A2R_* environment variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    ask.add_argument("--n", type=int, help="explorer paths (A2R_N, default 4)")
    ask.add_argument("--min-paths", type=int, help="paths that must succeed (A2R_MIN_PATHS)")
    for stage in ("explorer", "synthesizer"):
        env = f"A2R_{stage.upper()}__"
        ask.add_argument(f"--{stage}-url", help=f"OpenAI-compatible base URL ({env}BASE_URL)")
        ask.add_argument(f"--{stage}-model", help=f"served model name ({env}MODEL)")
    ask.add_argument("--max-tokens", type=int, help="completion token cap, both stages")
    ask.add_argument("--temperature", type=float, help="sampling temperature, both stages")
    ask.add_argument("--seed", type=int, help="sampling seed (explorer path i uses seed+i)")
    ask.add_argument("--timeout", type=float, help="seconds per model call")
    for stage in ("explorer", "synthesizer"):
        for kind in ("input", "output"):
            ask.add_argument(
                f"--{stage}-{kind}-price",
                type=float,
                help=f"{stage} price per 1M {kind} tokens (A2R_{stage.upper()}__{kind.upper()}_PRICE_PER_MTOK)",
            )
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ask.add_argument("--show-traces", action="store_true", help="print explorer reasoning traces")
    return parser


def context_from_args(args: argparse.Namespace) -> A2RContext:
    """Command-line values over A2R_* environment variables over defaults."""
    fields: dict[str, Any] = {"n": args.n, "min_paths": args.min_paths}
    fields["request_timeout_s"] = args.timeout
    shared = {"max_tokens": args.max_tokens, "temperature": args.temperature, "seed": args.seed}
    for stage in ("explorer", "synthesizer"):
        stage_fields = {
            "base_url": getattr(args, f"{stage}_url"),
            "model": getattr(args, f"{stage}_model"),
            "input_price_per_mtok": getattr(args, f"{stage}_input_price"),
            "output_price_per_mtok": getattr(args, f"{stage}_output_price"),
            **shared,
        }
        fields[stage] = {k: v for k, v in stage_fields.items() if v is not None}
    return A2RContext(**{k: v for k, v in fields.items() if v is not None})


def format_result(result: A2ROutput, wall_s: float, show_traces: bool = False) -> str:
    paths = result["paths"]
    usable = sum(path["error"] is None for path in paths)
    out = [f"Question: {result['question']}", "", f"Explorers: {usable}/{len(paths)} usable"]
    for path in paths:
        if path["error"] is not None:
            out.append(f"  [{path['index'] + 1}] FAILED: {path['error']}")
            continue
        out.append(
            f"  [{path['index'] + 1}] boxed: {path['boxed']!s:<12} {_snippet(path['answer'])}"
        )
        if show_traces and path["trace"]:
            out.append(textwrap.indent(path["trace"], "      | "))
    out += ["", "Synthesizer answer:", textwrap.indent(result["answer"] or "(empty)", "  ")]
    final = result["boxed_answer"] or r"(no \boxed{} in the synthesizer's answer)"
    out += ["", f"Final answer: {final}", ""]
    out.append(f"{'stage':<12}{'calls':>6}{'input tokens':>15}{'output tokens':>15}{'cost':>12}")
    for stage in ("explore", "synthesize", "total"):
        usage = result["usage"][stage]
        out.append(
            f"{stage:<12}{usage['calls']:>6}{usage['input_tokens']:>15}"
            f"{usage['output_tokens']:>15}{usage['cost']:>12.6f}"
        )
    out.append(f"\nwall time: {wall_s:.1f} s")
    return "\n".join(out)


def _snippet(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else "..." + flat[-(width - 3) :]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        context = context_from_args(args)
    except ValidationError as error:
        print(describe_validation_error(error), file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        result = asyncio.run(graph.ainvoke({"question": args.question}, context=context))
    except A2RError as error:
        print(f"a2r: {error}", file=sys.stderr)
        return 1
    wall_s = time.perf_counter() - started
    if args.json:
        print(json.dumps({**result, "wall_s": round(wall_s, 3)}, indent=2, ensure_ascii=False))
    else:
        print(format_result(result, wall_s, args.show_traces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
