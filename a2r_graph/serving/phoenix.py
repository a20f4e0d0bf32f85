"""The deployment's model prices, registered with Arize Phoenix.

Phoenix prices an LLM span from its own model table, by the span's model name
(``llm.model_name``, which it reads from ``gen_ai.request.model``) and token counts. A
self-hosted model is in no such table, so Phoenix shows "Total Cost $0" for every run while
``a2r.cost`` on the same spans says what the run cost. ``register_prices`` writes the
deployment's per-model prices (``A2R_EXPLORER__*_PRICE_PER_MTOK``, ``A2R_SYNTHESIZER__*``)
into Phoenix's model table through its GraphQL API (``createModel``, or ``updateModel`` for a
custom model of that name), so that its trace, project and model cost figures equal
``a2r.cost``. Phoenix computes a span's cost when it ingests it: register before the runs.

    a2r phoenix-prices --phoenix http://127.0.0.1:6006   # a Phoenix you already run
    python -m servers.phoenix serve --prices             # the project's launcher does it

Phoenix prices by model name alone: when two stages serve one model at different prices, the
explorer's price is registered and a warning says that Phoenix's figure will differ.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any, NamedTuple

import httpx

from a2r_graph.context import A2RContext
from a2r_graph.stages import ENDPOINTS

logger = logging.getLogger(__name__)

PHOENIX_MODEL_REFRESH_S = 7
"""Phoenix reloads its model table every 5 s (``GenerativeModelStore``): spans ingested
sooner after a registration are priced at the old prices. Wait this long (with a margin)."""
MODELS_QUERY = """
query { generativeModels(first: 1000) { edges { node { id name kind } } } }
"""
CREATE = """
mutation($input: CreateModelMutationInput!) { createModel(input: $input) { model { id } } }
"""
UPDATE = """
mutation($input: UpdateModelMutationInput!) { updateModel(input: $input) { model { id } } }
"""


class Prices(NamedTuple):
    """A model's prices per 1M tokens."""

    input: float
    output: float


class PhoenixPricesError(RuntimeError):
    """Phoenix could not be reached, or refused the prices; the message says which."""


def deployment_prices(context: A2RContext) -> dict[str, Prices]:
    """Each stage's model and its prices (the first stage's where two share a model)."""
    prices: dict[str, Prices] = {}
    for stage_name in ENDPOINTS:
        stage = getattr(context, stage_name)
        mine = Prices(stage.input_price_per_mtok, stage.output_price_per_mtok)
        if stage.model in prices and prices[stage.model] != mine:
            logger.warning(
                "the explorer and the synthesizer both serve %s, at different prices: Phoenix "
                "prices by model name and gets %s; its cost figures will differ from a2r.cost",
                stage.model,
                prices[stage.model],
            )
            continue
        prices.setdefault(stage.model, mine)
    return prices


def register_prices(
    phoenix_url: str, prices: dict[str, Prices], *, api_key: str | None = None, timeout: float = 30
) -> list[str]:
    """Make Phoenix price each model as ``prices`` says; the names registered."""
    api_key = api_key or os.environ.get("PHOENIX_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=phoenix_url.rstrip("/"), headers=headers, timeout=timeout) as http:
        custom = {
            edge["node"]["name"]: edge["node"]["id"]
            for edge in _graphql(http, MODELS_QUERY)["generativeModels"]["edges"]
            if edge["node"]["kind"] == "CUSTOM"
        }
        for model, price in prices.items():
            fields: dict[str, Any] = {
                "name": model,
                "namePattern": f"^{re.escape(model)}$",
                "costs": [
                    {"tokenType": "input", "kind": "PROMPT", "costPerMillionTokens": price.input},
                    {
                        "tokenType": "output",
                        "kind": "COMPLETION",
                        "costPerMillionTokens": price.output,
                    },
                ],
            }
            if model in custom:
                _graphql(http, UPDATE, {"input": {"id": custom[model], "provider": None, **fields}})
            else:
                _graphql(http, CREATE, {"input": fields})
    return list(prices)


def _graphql(http: httpx.Client, query: str, variables: dict | None = None) -> dict[str, Any]:
    try:
        reply = http.post("/graphql", json={"query": query, "variables": variables or {}})
    except httpx.HTTPError as error:
        raise PhoenixPricesError(
            f"cannot reach Phoenix at {http.base_url}: {type(error).__name__}: {error}"
        ) from error
    if reply.status_code in (401, 403):
        raise PhoenixPricesError(
            f"Phoenix at {http.base_url} refused the request ({reply.status_code}): set "
            "PHOENIX_API_KEY to a key that may edit its models"
        )
    try:
        body = reply.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("errors") or not isinstance(body.get("data"), dict):
        raise PhoenixPricesError(
            f"Phoenix at {http.base_url} answered {reply.status_code}: {reply.text[:300]}"
        )
    return body["data"]


def add_arguments(prices: argparse.ArgumentParser) -> None:
    """``a2r phoenix-prices``'s arguments."""
    prices.add_argument(
        "--phoenix",
        default=os.environ.get("PHOENIX_COLLECTOR_ENDPOINT", "http://127.0.0.1:6006"),
        help="Phoenix's base URL (default: PHOENIX_COLLECTOR_ENDPOINT, else %(default)s)",
    )


def main(args: Any) -> int:
    """register the deployment's model prices with Phoenix (its cost figures, not $0)

    Phoenix prices spans from its own model table, which has no self-hosted model: this writes
    each stage's model and prices (A2R_EXPLORER__*_PRICE_PER_MTOK, A2R_SYNTHESIZER__*) into it,
    so that Phoenix's costs equal a2r.cost. Run it before the runs (Phoenix prices a span when
    it ingests it). PHOENIX_API_KEY is sent when set. Exits 0, or 2 with the reason.
    """
    from pydantic import ValidationError

    from a2r_graph.errors import describe_validation_error

    try:
        prices = deployment_prices(A2RContext())
        registered = register_prices(args.phoenix, prices)
    except ValidationError as error:
        print(f"a2r phoenix-prices: {describe_validation_error(error)}", file=sys.stderr)
        return 2
    except PhoenixPricesError as error:
        print(f"a2r phoenix-prices: {error}", file=sys.stderr)
        return 2
    for model in registered:
        price = prices[model]
        print(f"{model}: input {price.input:g}, output {price.output:g} per 1M tokens")
    return 0
