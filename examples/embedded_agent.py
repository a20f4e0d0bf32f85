"""An agent with a real model calling A2R, on this machine: ``make agent``.

Starts the embedded Qwen2.5-Coder-0.5B on vLLM with tool calling (its chat template's
``<tool_call>``, vLLM's ``--enable-auto-tool-choice --tool-call-parser hermes``), which plays
the agent's model and both A2R stages; runs the ReAct loop of ``examples/agent.py`` with A2R as
its tool (in-process, ``as_tool``) and prints the agent's turns, the tool call, A2R's usage per
stage and the final answer. ``--force-tool`` makes the first turn call A2R (a 0.5B model does
not always choose to); ``--return-direct`` ends the agent with A2R's answer (a 0.5B model does
not reliably repeat it).

    python -m examples.embedded_agent ["QUESTION"] [--model qwen2.5-coder-0.5b] [--force-tool]
                                      [--return-direct]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_openai import ChatOpenAI

from a2r_graph.serving.tool import as_tool
from examples.agent import build_agent
from servers.engines import EmbeddedVLLM

TOOL_CALLING = ("--enable-auto-tool-choice", "--tool-call-parser", "hermes")
SYSTEM = (
    "You can call a reasoning tool. For a problem that needs careful reasoning, call it once "
    "with the user's complete problem copied word for word (every number and condition). When "
    "it returns, reply to the user in one sentence with the tool's final answer."
)
QUESTION = (
    "A bakery sells muffins for 3 dollars each and cookies for 2 dollars each. Maria buys "
    "4 muffins and some cookies and pays 20 dollars in total. How many cookies did she buy?"
)


@contextmanager
def tool_calling_server(model: str = "qwen2.5-coder-0.5b") -> Iterator[EmbeddedVLLM]:
    """The embedded vLLM serving ``model`` with tool calling, A2R_* pointed at it."""
    with EmbeddedVLLM(model, extra_args=TOOL_CALLING) as server:
        saved = {key: os.environ.get(key) for key in server.a2r_env()}
        os.environ.update(server.a2r_env())
        try:
            yield server
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def build(server: EmbeddedVLLM, tool: Any, force_tool: bool = False) -> Any:
    """The ReAct agent over ``server`` with ``tool``; with ``force_tool`` its first turn calls
    it (a named ``tool_choice``), the later ones choose."""
    model = ChatOpenAI(
        base_url=server.base_url,
        model=server.model_name,
        api_key="EMPTY",
        temperature=0,
        max_tokens=256,  # a turn is a tool call or a short reply
    )
    return build_agent(model, [tool], first_tool_choice=tool.name if force_tool else None)


def show(messages: list[Any]) -> None:
    for message in messages:
        message.pretty_print()
        if isinstance(message, ToolMessage) and isinstance(message.artifact, dict):
            for stage, usage in message.artifact.get("usage", {}).items():
                print(
                    f"  A2R {stage:<10} calls {usage['calls']:>2}  in {usage['input_tokens']:>6}"
                    f"  out {usage['output_tokens']:>6}  cost {usage['cost']:.6f}"
                )
    final = next((m for m in reversed(messages) if isinstance(m, AIMessage | ToolMessage)), None)
    who = "A2R's, returned directly" if isinstance(final, ToolMessage) else "the agent's"
    print(f"\nFinal answer ({who}): {final.content if final else '(none)'}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default=QUESTION)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--force-tool", action="store_true", help="the first turn calls A2R")
    parser.add_argument(
        "--return-direct", action="store_true", help="A2R's answer is the agent's final answer"
    )
    parser.add_argument("--n", type=int, default=4, help="A2R's explorer paths")
    parser.add_argument("--max-tokens", type=int, default=384, help="per A2R model call")
    args = parser.parse_args()
    with tool_calling_server(args.model) as server:
        stage = {"max_tokens": args.max_tokens}
        context = {"n": args.n, "synthesis_mode": "synthesize"}
        tool = as_tool(
            context={**context, "explorer": stage, "synthesizer": stage},
            return_direct=args.return_direct,
        )
        agent = build(server, tool, args.force_tool)
        messages = [("system", SYSTEM), ("user", args.question)]
        result = await agent.ainvoke({"messages": messages})
        show(result["messages"])


if __name__ == "__main__":
    asyncio.run(main())
