"""Explorer batching on the real local vLLM server: what N paths cost against one.

Every request generates exactly ``--max-tokens`` tokens (vLLM's ``ignore_eos``), so the
modes differ only in how the server schedules them:

- 1 request (the unit);
- N requests at once (what the graph's N explorer branches send);
- N requests one after another (no batching);
- 1 request with ``n=N`` (vLLM parallel sampling: one prefill, N sequences).

    python -m benchmarks.batching [--model smollm2-135m] [--n 4] [--max-tokens 128]
    A2R_BENCH_BASE_URL=http://gpu:8000/v1 A2R_BENCH_MODEL=name python -m benchmarks.batching
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import openai

from a2r_graph.prompts import render_explorer_prompt
from benchmarks.common import machine, table

QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?"
)


async def measure(client: openai.AsyncOpenAI, model: str, n: int, max_tokens: int, mode: str):
    """(wall seconds, completion tokens) of one round of ``mode``."""
    messages = [{"role": "user", "content": render_explorer_prompt(QUESTION)}]

    def request(count: int = 1, seed: int = 0):
        return client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0.6,
            seed=seed,
            n=count,
            extra_body={"ignore_eos": True},
        )

    started = time.perf_counter()
    if mode == "1 request":
        replies = [await request()]
    elif mode == "N at once":
        replies = await asyncio.gather(*(request(seed=i) for i in range(n)))
    elif mode == "N one by one":
        replies = [await request(seed=i) for i in range(n)]
    else:  # "1 request, n=N"
        replies = [await request(count=n)]
    wall = time.perf_counter() - started
    return wall, sum(r.usage.completion_tokens for r in replies)


async def run(base_url: str, model: str, args: argparse.Namespace) -> None:
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600
    ) as client:
        await report(client, model, args)


async def report(client: openai.AsyncOpenAI, model: str, args: argparse.Namespace) -> None:
    modes = ["1 request", "N at once", "N one by one", "1 request, n=N"]
    await measure(client, model, args.n, 8, "N at once")  # warm-up
    walls: dict[str, list[float]] = {mode: [] for mode in modes}
    tokens: dict[str, int] = {}
    for _ in range(args.repeats):  # interleaved: drift hits every mode alike
        for mode in modes:
            wall, generated = await measure(client, model, args.n, args.max_tokens, mode)
            walls[mode].append(wall)
            tokens[mode] = generated
    unit = statistics.median(walls["1 request"])
    rows = []
    for mode in modes:
        wall = statistics.median(walls[mode])
        rows.append(
            (mode.replace("N", str(args.n)), tokens[mode], wall, wall / unit, tokens[mode] / wall)
        )
    print(
        f"model {model}, {args.max_tokens} tokens per sequence, median of {args.repeats} rounds\n"
    )
    print(table(["mode", "tokens", "wall (s)", "x one request", "tokens/s"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="embedded model (servers/)")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# Explorer batching\n\nmachine: {machine()}\n")
    if base_url := os.environ.get("A2R_BENCH_BASE_URL"):
        asyncio.run(run(base_url, os.environ["A2R_BENCH_MODEL"], args))
        return
    from servers.embedded import EmbeddedVLLM

    with EmbeddedVLLM(model=args.model) as server:
        asyncio.run(run(server.base_url, server.model_name, args))


if __name__ == "__main__":
    main()
