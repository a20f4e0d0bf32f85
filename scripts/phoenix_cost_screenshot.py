"""Phoenix shows a run's real cost: checked in a real headless browser (Debian's chromium).

Starts the embedded SmolLM2 on llama.cpp and a Phoenix, registers the deployment's prices with
Phoenix (``a2r phoenix-prices``), runs ``a2r ask`` traced into it, then opens the run's trace
in chromium: the rendered page must show Phoenix's cost of the trace, which must equal the
run's ``a2r.cost``. Writes the screenshot (default docs/phoenix-cost.png); exit 1 on a
mismatch. With ``--no-prices`` it shows what a user sees without the registration ($0).

    apt-get install chromium   # once
    python -m scripts.phoenix_cost_screenshot [--out docs/phoenix-cost.png] [--no-prices]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from a2r_graph.serving.phoenix import PHOENIX_MODEL_REFRESH_S
from servers.engines import EmbeddedLlamaCpp
from servers.phoenix import PhoenixServer

PROJECT = "a2r-cost"
PRICES = {"INPUT": "20", "OUTPUT": "80"}  # per 1M tokens, both stages: one model serves both
QUESTION = "A shelf has 4 rows of 7 books. How many books are on the shelf?"


def graphql(phoenix: PhoenixServer, query: str, **variables: str) -> dict:
    reply = httpx.post(
        f"{phoenix.url}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    reply.raise_for_status()
    body = reply.json()
    if body.get("errors"):
        raise RuntimeError(f"Phoenix GraphQL: {body['errors']}")
    return body["data"]


def last_trace(phoenix: PhoenixServer) -> tuple[str, str, float | None]:
    """The project's global id, its newest trace's id, and Phoenix's cost of that trace."""
    query = """query($name: String!) { getProjectByName(name: $name) { id
        spans(first: 1, filterCondition: "parent_id is None", sort: {col: startTime, dir: desc}) {
          edges { node { context { traceId } trace { costSummary { total { cost } } } } } } } }"""
    for _ in range(60):
        project = graphql(phoenix, query, name=PROJECT)["getProjectByName"]
        if project and project["spans"]["edges"]:
            node = project["spans"]["edges"][0]["node"]
            cost = node["trace"]["costSummary"]["total"]["cost"]
            return project["id"], node["context"]["traceId"], cost
        time.sleep(1)
    raise RuntimeError(f"no trace reached Phoenix's project {PROJECT}")


def browse(url: str, screenshot: Path) -> str:
    """The page's text as chromium rendered it, and its screenshot."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--window-size=1600,1000", "--virtual-time-budget=30000"]  # fmt: skip
    subprocess.run([*common, f"--screenshot={screenshot}", url], check=True, capture_output=True)
    dom = subprocess.run(
        [*common, "--dump-dom", url], check=True, capture_output=True, text=True
    ).stdout
    return re.sub(r"<[^>]+>", " ", dom)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/phoenix-cost.png"))
    parser.add_argument("--no-prices", action="store_true", help="skip the registration")
    args = parser.parse_args()
    with EmbeddedLlamaCpp("smollm2-135m") as model, PhoenixServer() as phoenix:
        env = {
            **os.environ,
            **model.a2r_env(),
            **phoenix.otel_env("a2r-cost", project=PROJECT),
            **{
                f"A2R_{stage}__{kind}_PRICE_PER_MTOK": price
                for stage in ("EXPLORER", "SYNTHESIZER")
                for kind, price in PRICES.items()
            },
            "A2R_SYNTHESIS_MODE": "synthesize",
        }
        a2r = [sys.executable, "-m", "a2r_graph.serving.cli"]
        if not args.no_prices:
            subprocess.run([*a2r, "phoenix-prices", "--phoenix", phoenix.url], env=env, check=True)
            time.sleep(PHOENIX_MODEL_REFRESH_S)
        shown = subprocess.run(
            [*a2r, "ask", QUESTION, "--n", "2", "--max-tokens", "64", "--json"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        a2r_cost = json.loads(shown.stdout)["usage"]["total"]["cost"]
        project_id, trace_id, phoenix_cost = last_trace(phoenix)
        url = f"{phoenix.url}/projects/{project_id}/traces/{trace_id}"
        text = browse(url, args.out)
        shown_costs = sorted(set(re.findall(r"\$\s?\d+(?:\.\d+)?", text)))
        print(f"a2r.cost:            {a2r_cost:.6f}")
        print(f"Phoenix trace cost:  {phoenix_cost}")
        print(f"costs on the page:   {', '.join(shown_costs) or 'none'}")
        print(f"screenshot:          {args.out} ({url})")
        print(f"project id:          {base64.b64decode(project_id).decode()}")
        if args.no_prices:
            return 0
        # the trace view rounds its "Total Cost" to cents
        expected = f"Total Cost ${a2r_cost:.2f}"
        same = phoenix_cost is not None and abs(phoenix_cost - a2r_cost) <= 1e-9 + 1e-6 * a2r_cost
        on_page = expected in " ".join(text.split())
        print(f"Phoenix's cost is a2r.cost: {same}; the page shows {expected!r}: {on_page}")
        return 0 if same and on_page else 1


if __name__ == "__main__":
    raise SystemExit(main())
