"""Does the agent call A2R when it should? The agent's first turn on 20 prompts, per tool
description.

The embedded Qwen2.5-Coder-0.5B on vLLM with tool calling (``examples/embedded_agent.py``:
vLLM's hermes parser, the same ``SYSTEM`` prompt and agent, ``tool_choice`` auto) plays the
agent. 10 prompts need careful multi-step reasoning (word problems with several numbers), 10
do not (greetings, thanks, facts, one-step arithmetic). For each tool description (A2R's own,
and one that says when to call it and when not to) the agent's first turn is classified: a
tool call (parsed by vLLM), the call written as JSON text instead (the parser found none), or
no call (an answer, or a made-up tool's call written as JSON). Then A2R really runs
(``as_tool``, same server as both stages) on every question the agent passed in a call it
should not have made (the trivial half), for what those calls cost; with ``--cost-text-calls``
also on the calls written as text (what they would cost if a parser took them).

    python -m benchmarks.agent_calls [--cost-text-calls] [--n 2] [--max-tokens 256] [--fresh]

Writes ``--out`` (default ``docs/results/agent-calls``): ``results.jsonl`` (one line per
description and prompt, with the agent's reply; a rerun resumes from it), ``runs.jsonl`` (each
invocation that did work: its time and load) and ``table.md`` (what it prints). Figures:
docs/agent.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage

from a2r_graph.serving.registry import A2R
from a2r_graph.serving.tool import as_tool
from benchmarks.common import machine, table
from examples.embedded_agent import QUESTION, SYSTEM, build, tool_calling_server

DESCRIPTIONS = {
    "current": A2R.description,
    "when-to-call": (
        "Solve a hard reasoning or math problem carefully: several independent solvers attempt "
        "it in parallel and a stronger model synthesizes their answers into one final answer. "
        "Slow and costly (several model calls). Call it ONLY for a problem that needs careful "
        "multi-step reasoning, such as a word problem with several numbers and conditions. Do "
        "NOT call it for greetings, thanks, chit-chat, general knowledge questions or one-step "
        "arithmetic (like 2+2): answer those yourself, directly, without any tool. Pass the "
        "full, self-contained problem statement."
    ),
}
REASONING = [
    QUESTION,  # the bakery question of examples/embedded_agent.py
    "A train leaves a station at 2:15 pm traveling at 60 km/h. A second train leaves the same "
    "station at 3:00 pm on the same track in the same direction at 80 km/h. At what time does "
    "the second train catch up with the first?",
    "Tom has twice as many marbles as Jerry. After Tom gives Jerry 6 marbles, they have the "
    "same number of marbles. How many marbles did Tom have at first?",
    "A shop discounts a jacket by 20%, then adds 10% sales tax to the discounted price. The "
    "customer pays 66 dollars. What was the jacket's original price?",
    "A farmer has only chickens and cows. Together they have 30 heads and 74 legs. How many "
    "cows does the farmer have?",
    "Pipe A fills a tank in 6 hours and pipe B fills it in 3 hours. A drain empties the full "
    "tank in 4 hours. With both pipes and the drain open, how many hours does it take to fill "
    "the empty tank?",
    "Lisa is 4 years older than her brother. In 6 years the sum of their ages will be 40. How "
    "old is Lisa now?",
    "A rectangle's length is 3 cm more than twice its width, and its perimeter is 48 cm. What "
    "is its area in square centimeters?",
    "A school orders 7 boxes of 24 pencils. It gives 15 pencils to each of its 9 classes and "
    "packs the rest into bags of 6 for storage. How many full bags go into storage?",
    "A phone plan costs 15 dollars a month plus 0.10 dollars per minute beyond 300 minutes. "
    "Ana talked 420 minutes in March and 280 minutes in April. How much did she pay in total "
    "for the two months?",
]
TRIVIAL = [
    "hi",
    "what is 2+2",
    "thanks!",
    "what's the capital of France?",
    "Good morning, how are you today?",
    "What is 7 times 8?",
    "Tell me a joke.",
    "What color is the sky on a clear day?",
    "How many days are in a week?",
    "ok bye, see you later",
]
PROMPTS = [("reasoning", i, p) for i, p in enumerate(REASONING)] + [
    ("trivial", i, p) for i, p in enumerate(TRIVIAL)
]
HALVES = {"reasoning": "needs reasoning", "trivial": "trivial"}
# The project's price of the 0.5B (Makefile SMALL_TO_BIG_PRICES), per 1M tokens; it plays both
# A2R stages here.
INPUT_PRICE, OUTPUT_PRICE = 0.01, 0.04


@dataclass(frozen=True)
class Settings:
    n: int
    max_tokens: int
    input_price: float
    output_price: float

    def context(self) -> dict[str, Any]:
        stage = {
            "max_tokens": self.max_tokens,
            "input_price_per_mtok": self.input_price,
            "output_price_per_mtok": self.output_price,
        }
        return {
            "n": self.n,
            "synthesis_mode": "synthesize",
            "explorer": stage,
            "synthesizer": stage,
        }


NAMED_CALL = re.compile(r'"name"\s*:\s*"([^"]+)"\s*,\s*"(?:arguments|parameters)"')
QUESTION_ARG = re.compile(r'"question"\s*:\s*"((?:[^"\\]|\\.)*)"')


def written_calls(content: str) -> list[dict[str, Any]]:
    """The calls the model wrote as text instead of a tool call: JSON objects with a ``name``
    and ``arguments`` (or ``parameters``) in its reply, often in a Markdown code block."""
    decoder, found = json.JSONDecoder(), []
    for start in (m.start() for m in re.finditer(r"\{", content)):
        try:
            value, _ = decoder.raw_decode(content, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "name" in value:
            args = value.get("arguments", value.get("parameters"))
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    args = {"question": args}
            if isinstance(args, dict):
                found.append({"name": value["name"], "args": args})
    if not found and (named := NAMED_CALL.search(content)):  # not JSON (e.g. "width": 2 * 3)
        question = QUESTION_ARG.search(content)
        args = {"question": json.loads(f'"{question[1]}"')} if question else {}
        found.append({"name": named[1], "args": args, "not_json": True})
    return found


def classify(record: dict[str, Any], tool: Any) -> dict[str, Any]:
    """The first turn's outcome: a tool call (vLLM's parser found one), an invalid tool call
    (found, arguments not JSON), the call written as text (JSON naming the tool or passing a
    question; ``text_call_valid``: would the tool accept its arguments), a made-up tool
    written as text (JSON calling a tool that does not exist), or an answer (no call)."""
    text_call, valid = None, None
    if record["tool_call"]:
        outcome, args = "tool call", record["tool_call"]["args"]
    elif record.get("invalid_tool_calls"):
        outcome, args = "invalid tool call", {}
    else:
        calls = written_calls(record["content"])
        ours = [c for c in calls if c["name"] == tool.name or "question" in c["args"]]
        if ours:
            text_call, args = ours[0], ours[0]["args"]
            outcome = "call as text"
            try:
                tool.args_schema.model_validate(args)
                valid = not text_call.get("not_json")
            except ValueError:
                valid = False
        else:
            outcome, args = ("made-up tool as text" if calls else "answered"), {}
    question = args.get("question")
    return record | {
        "outcome": outcome,
        "question_passed": question if isinstance(question, str) else None,
        "text_call": text_call,
        "text_call_valid": valid,
    }


async def first_turn(agent: Any, prompt: str) -> tuple[AIMessage, float]:
    """The agent's first turn on ``prompt`` (its graph stopped before the tool node)."""
    started = time.perf_counter()
    messages = [("system", SYSTEM), ("user", prompt)]
    async with contextlib.aclosing(
        agent.astream({"messages": messages}, stream_mode="updates")
    ) as updates:
        async for update in updates:
            if "agent" in update:
                return update["agent"]["messages"][-1], time.perf_counter() - started
    raise RuntimeError("the agent returned no turn")


def turn_record(message: AIMessage, wall: float, tool_name: str) -> dict[str, Any]:
    content = message.content if isinstance(message.content, str) else str(message.content)
    calls = [c for c in message.tool_calls if c["name"] == tool_name]
    usage: dict[str, Any] = dict(message.usage_metadata or {})
    return {
        "tool_call": calls[0] if calls else None,
        "invalid_tool_calls": len(message.invalid_tool_calls),
        "content": content,
        "finish_reason": message.response_metadata.get("finish_reason"),
        "agent_input_tokens": usage.get("input_tokens", 0),
        "agent_output_tokens": usage.get("output_tokens", 0),
        "agent_wall_s": round(wall, 2),
    }


async def run_a2r(tool: Any, call: dict[str, Any]) -> dict[str, Any]:
    """A2R on the call the agent made (through the tool, as the agent's tool node would)."""
    started = time.perf_counter()
    tool_call = {"type": "tool_call", "id": call.get("id") or str(uuid.uuid4()), **call}
    reply: ToolMessage = await tool.ainvoke(tool_call)
    wall = time.perf_counter() - started
    if reply.status != "success" or not isinstance(reply.artifact, dict):
        return {"error": str(reply.content)[:500], "wall_s": round(wall, 1)}
    total = reply.artifact["usage"]["total"]
    return {
        "calls": total["calls"],
        "input_tokens": total["input_tokens"],
        "output_tokens": total["output_tokens"],
        "cost": total["cost"],
        "boxed_answer": reply.artifact.get("boxed_answer"),
        "wall_s": round(wall, 1),
    }


def load(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["description"], r["half"], r["index"]): r for r in rows}


def save(path: Path, rows: dict[tuple[str, str, int], dict[str, Any]]) -> None:
    order = {d: i for i, d in enumerate(DESCRIPTIONS)}
    ordered = sorted(rows.values(), key=lambda r: (order[r["description"]], r["half"], r["index"]))
    path.write_text("".join(json.dumps(r) + "\n" for r in ordered))


def load_average() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return out.split("load average:")[-1].strip() if "load average" in out else "unknown"


def report(rows: list[dict[str, Any]], header: list[str]) -> str:
    summary = []
    for description in DESCRIPTIONS:
        for half, title in HALVES.items():
            group = [r for r in rows if r["description"] == description and r["half"] == half]
            if not group:
                continue
            count = lambda outcome, g=group: sum(r["outcome"] == outcome for r in g)  # noqa: E731
            summary.append(
                [
                    description,
                    title,
                    len(group),
                    count("tool call"),
                    count("invalid tool call"),
                    count("call as text"),
                    sum(bool(r["text_call_valid"]) for r in group),
                    count("made-up tool as text") + count("answered"),
                    count("made-up tool as text"),
                    sum(r["agent_input_tokens"] for r in group),
                    sum(r["agent_output_tokens"] for r in group),
                ]
            )
    calls_table = table(
        [
            "description",
            "half",
            "prompts",
            "tool calls",
            "invalid tool calls",
            "wrote the call as text",
            "of which valid",
            "no call",
            "no call: a made-up tool as text",
            "agent in tok",
            "agent out tok",
        ],
        summary,
    )
    cost = []
    for description in DESCRIPTIONS:
        for outcome in ("tool call", "call as text"):
            runs = [
                r["a2r"]
                for r in rows
                if r["description"] == description
                and r["half"] == "trivial"
                and r["outcome"] == outcome
                and r.get("a2r")
            ]
            if not runs and outcome != "tool call":
                continue
            done = [run for run in runs if "error" not in run]
            total = sum(run["cost"] for run in done)
            cost.append(
                [
                    description,
                    outcome,
                    len(runs),
                    len(runs) - len(done),
                    sum(run["calls"] for run in done),
                    sum(run["input_tokens"] for run in done),
                    sum(run["output_tokens"] for run in done),
                    f"{total:.8f}",
                    f"{total / len(done):.8f}" if done else "-",
                    f"{sum(run['wall_s'] for run in done) / len(done):.1f}" if done else "-",
                ]
            )
    cost_table = table(
        [
            "description",
            "unnecessary",
            "A2R runs",
            "failed",
            "A2R model calls",
            "A2R in tok",
            "A2R out tok",
            "cost (total)",
            "cost per call",
            "wall per call (s)",
        ],
        cost,
    )
    listing = table(
        ["description", "half", "#", "prompt", "outcome", "question passed", "A2R", "A2R cost"],
        [
            [
                r["description"],
                r["half"],
                r["index"],
                _short(r["prompt"], 48),
                r["outcome"],
                _short(r["question_passed"] or "", 40),
                _short(str(r["a2r"].get("boxed_answer")), 12) if r.get("a2r") else "",
                f"{r['a2r']['cost']:.8f}" if r.get("a2r") and "cost" in r["a2r"] else "",
            ]
            for r in rows
        ],
    )
    descriptions = "\n".join(f"- `{name}`: {text}" for name, text in DESCRIPTIONS.items())
    return "\n\n".join(
        [
            "\n".join(header),
            "Tool descriptions:\n\n" + descriptions,
            "First turn (`tool_choice` auto), per description and half:\n\n" + calls_table,
            "What the unnecessary calls cost (trivial half: A2R run on the question the agent "
            "passed; `call as text` rows, with --cost-text-calls, are what those would cost if "
            "a parser took them):\n\n" + cost_table,
            "Per prompt:\n\n" + listing,
        ]
    )


def _short(text: str, width: int) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= width else text[: width - 3] + "..."


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=2, help="A2R's explorer paths")
    parser.add_argument("--max-tokens", type=int, default=256, help="per A2R model call")
    parser.add_argument("--input-price", type=float, default=INPUT_PRICE, help="per 1M tokens")
    parser.add_argument("--output-price", type=float, default=OUTPUT_PRICE, help="per 1M tokens")
    parser.add_argument("--concurrency", type=int, default=4, help="first turns at once")
    parser.add_argument(
        "--cost-text-calls",
        action="store_true",
        help="also run A2R on the trivial half's calls written as text (what they would cost "
        "if a parser took them)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/results/agent-calls"))
    parser.add_argument("--fresh", action="store_true", help="ignore an earlier results.jsonl")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    settings = Settings(args.n, args.max_tokens, args.input_price, args.output_price)
    tools = {
        name: as_tool(context=settings.context(), description=text)
        for name, text in DESCRIPTIONS.items()
    }
    rows = {} if args.fresh else load(path)
    for key, record in rows.items():  # the classification as this version of the script does it
        rows[key] = classify(record, tools[record["description"]])
    costed = {"tool call", "call as text"} if args.cost_text_calls else {"tool call"}
    started, load_before = time.perf_counter(), load_average()
    todo = [
        (description, half, index, prompt)
        for description in DESCRIPTIONS
        for half, index, prompt in PROMPTS
        if (description, half, index) not in rows
    ]
    unnecessary = lambda: [  # noqa: E731
        r
        for _, r in sorted(rows.items())
        if r["half"] == "trivial" and r["outcome"] in costed and "a2r" not in r
    ]
    a2r_runs = 0
    with contextlib.ExitStack() as stack:
        if todo or unnecessary():
            server = stack.enter_context(tool_calling_server(args.model))
        gate = asyncio.Semaphore(args.concurrency)
        lock = asyncio.Lock()

        async def one(description: str, half: str, index: int, prompt: str) -> None:
            tool = tools[description]
            async with gate:
                message, wall = await first_turn(build(server, tool), prompt)
            record = {"description": description, "half": half, "index": index, "prompt": prompt}
            record = classify(record | turn_record(message, wall, tool.name), tool)
            async with lock:
                rows[(description, half, index)] = record
                save(path, rows)
            print(f"{description:<13} {half:<9} {index:>2} {record['outcome']:<20} {prompt[:50]}")

        await asyncio.gather(*(one(*item) for item in todo))
        for record in unnecessary():
            # a call written as text: its question only (the 0.5B copies schema keys the tool
            # refuses); n and the rest from the benchmark's context
            call = record["tool_call"] or {
                "name": tools[record["description"]].name,
                "args": {"question": record["question_passed"] or record["prompt"]},
            }
            record["a2r"] = await run_a2r(tools[record["description"]], call)
            a2r_runs += 1
            save(path, rows)
            print(f"A2R on {record['description']} trivial {record['index']}: {record['a2r']}")

    runs_path = args.out / "runs.jsonl"
    if todo or a2r_runs:
        run = {
            "date": date.today().isoformat(),
            "first_turns": len(todo),
            "a2r_runs": a2r_runs,
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "load_start": load_before,
            "load_end": load_average(),
        }
        with runs_path.open("a") as log:
            log.write(json.dumps(run) + "\n")
    runs = (
        [json.loads(line) for line in runs_path.read_text().splitlines()]
        if runs_path.exists()
        else []
    )
    header = [
        "# Does the agent call A2R when it should?",
        "",
        f"Agent and both A2R stages: {args.model} on the embedded vLLM (hermes tool parser), "
        f"`tool_choice` auto, temperature 0, agent max_tokens 256, the system prompt of "
        f"examples/embedded_agent.py. A2R: n={args.n}, synthesis_mode synthesize, max_tokens "
        f"{args.max_tokens} per call, prices {args.input_price}/{args.output_price} per 1M "
        f"input/output tokens for both stages. Machine: {machine()}.",
        "",
        "Runs (the script resumes; load average is `uptime`'s 1/5/15 min):",
        "",
        *(
            f"- {r['date']}: {r['first_turns']} first turns, {r['a2r_runs']} A2R runs, "
            f"{r['minutes']} min (vLLM start included); load {r['load_start']} at start, "
            f"{r['load_end']} at end"
            for r in runs
        ),
    ]
    text = report(list(dict(sorted(rows.items())).values()), header)
    (args.out / "table.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    asyncio.run(main())
