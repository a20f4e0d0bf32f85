"""Where R2R's routed answers leave the LLM's own (docs/results/r2r-heldout/README.md).

Reads the saved runs (checkpoint DBs of ``run.sh``) of ``llm-alone`` and a routed
configuration; per problem both finished, the first token where the routed output differs
from the LLM-alone output (greedy decoding: with the same prefix the LLM would have written its
own token, so the routed one came from the SLM, unflagged). With ``--slm``/``--llm`` (the two
llama.cpp servers' base URLs, as under ``servers.embedded exec``) it also asks each model for
its top-10 at that point, for the problems the routed configuration lost.

    python docs/results/r2r_divergence.py entropy-0.5 [--slm http://127.0.0.1:P --llm ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
from pathlib import Path

import httpx

from a2r_graph import threads
from a2r_graph.r2r.graph import build_r2r_graph

RESULTS = "docs/results/r2r-heldout"
DB = Path("~/.cache/a2r-graph/r2r-heldout").expanduser()


async def finished(config: str) -> dict[str, tuple[list[int], list[int], bool]]:
    """key -> (prompt ids, output ids, correct) of every finished problem of ``config``."""
    text = Path(f"{RESULTS}/{config}/results.jsonl").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    done = {d["key"]: d for d in lines if not d.get("error") and "correct" in (d["strategy"] or {})}
    out = {}
    async with threads.sqlite_checkpointer(DB / f"{config}.sqlite") as saver:
        graph = build_r2r_graph(checkpointer=saver)
        for key, line in done.items():
            state = await graph.aget_state({"configurable": {"thread_id": line["thread_id"]}})
            values = state.values
            out[key] = (values["prompt_ids"], values["output_ids"], line["strategy"]["correct"])
    return out


async def top10(http: httpx.AsyncClient, url: str, ids: list[int]) -> str:
    reply = await http.post(
        f"{url}/completion",
        json={"prompt": ids, "n_predict": 1, "n_probs": 10, "temperature": 0}
        | {"cache_prompt": False},
    )
    top = reply.json()["completion_probabilities"][0]["top_logprobs"]
    probs = [math.exp(t["logprob"]) for t in top]
    entropy = -sum(p / sum(probs) * math.log(p / sum(probs)) for p in probs)
    best = ", ".join(f"{t['token']!r} {p:.2f}" for t, p in zip(top[:3], probs, strict=False))
    return f"H(top10) {entropy:.2f}: {best}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--slm")
    parser.add_argument("--llm")
    args = parser.parse_args()
    alone, routed = await finished("llm-alone"), await finished(args.config)
    common = sorted(set(alone) & set(routed))
    where = {}
    for key in common:
        mine, theirs = alone[key][1], routed[key][1]
        first = next(
            (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None
        )
        where[key] = len(mine) if first is None else first
    share = statistics.median(where[k] / len(alone[k][1]) for k in common)
    same = sum(alone[k][1] == routed[k][1] for k in common)
    print(f"{len(common)} problems; identical outputs: {same}; median first divergence at "
          f"{share:.0%} of the LLM's answer")  # fmt: skip
    lost = [k for k in common if alone[k][2] and not routed[k][2]]
    won = [k for k in common if routed[k][2] and not alone[k][2]]
    print(f"lost to the LLM alone: {len(lost)}; won: {len(won)}")
    async with httpx.AsyncClient(timeout=300) as http:
        for key in lost:
            i = where[key]
            print(f"{key}: first divergence at token {i} of {len(alone[key][1])}")
            if args.slm and args.llm:
                prefix = routed[key][0] + routed[key][1][:i]
                print(f"  SLM {await top10(http, args.slm, prefix)}")
                print(f"  LLM {await top10(http, args.llm, prefix)}")


if __name__ == "__main__":
    asyncio.run(main())
