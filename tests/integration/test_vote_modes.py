"""The vote modes (``synthesis_mode`` vote, weighted_vote, vote_first) through each door of a
real ``langgraph dev`` (its runs API, its OpenAI endpoint, its MCP tool) over the real vLLM
server, counted by the server itself: ``vote`` never calls the synthesizer, ``vote_first``
calls it exactly when the paths have no strict majority.

The deployment constrains the explorers to "The answer is \\boxed{4}." or "...{5}." (vLLM's
structured output) at a high temperature, so that four paths split 4-0, 3-1 or 2-2: which one
a run got is read from its paths, and the request count must follow."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langgraph_sdk import get_client

from tests.integration.conftest import SERVER_KEY, langgraph_dev, vllm_env
from tests.mcp_calls import mcp_session

pytestmark = pytest.mark.integration
QUESTION = "Is the answer 4 or 5?"
N = 4
FOUR_OR_FIVE = {"structured_outputs": {"regex": r"The answer is \\boxed\{[45]\}\."}}
MODES = ("vote", "weighted_vote", "vote_first")


@pytest.fixture(scope="module")
def voting(vllm_server, tmp_path_factory) -> Iterator[str]:
    env = vllm_env(vllm_server) | {
        "A2R_EXPLORER__EXTRA_BODY": json.dumps(FOUR_OR_FIVE),
        "A2R_EXPLORER__TEMPERATURE": "1.5",
        "A2R_CONFIDENCE__TOP_LOGPROBS": "2",  # weighted_vote's weights, for every door
    }
    log = tmp_path_factory.mktemp("vote-modes") / "langgraph-dev.log"
    with langgraph_dev(env, log) as (url, _):
        yield url


def strict_majority(boxed: list[str | None]) -> bool:
    """One answer alone holds the most paths, and at least 2 (``VoteFirst``'s defaults)."""
    counts = Counter(b for b in boxed if b is not None).most_common()
    return bool(counts) and counts[0][1] >= 2 and (len(counts) == 1 or counts[1][1] < counts[0][1])


def expected_requests(mode: str, boxed: list[str | None]) -> int:
    synthesized = mode == "vote_first" and not strict_majority(boxed)
    return N + int(synthesized)


def check(mode: str, boxed: list[str | None], answer: str | None, by: str, served: float) -> None:
    assert len(boxed) == N and set(boxed) <= {"4", "5"}, boxed
    assert served == expected_requests(mode, boxed), (mode, boxed, served)
    if served == N:  # answered by the vote: its answer is the paths' most common one
        assert by == ("weighted_vote" if mode == "weighted_vote" else "vote")
        if mode != "weighted_vote":
            assert answer == Counter(boxed).most_common(1)[0][0]
    else:
        assert by == "synthesizer"
    print(f"{mode}: paths {boxed} -> {answer} by {by}, {served:.0f} vLLM requests")


@pytest.mark.parametrize("mode", MODES)
async def test_langgraph_server_runs_each_vote_mode(voting, vllm_server, mode):
    client = get_client(url=voting)
    before = vllm_server.requests_served()
    result: dict[str, Any] = await client.runs.wait(  # type: ignore[assignment]
        None, "a2r", input={"question": QUESTION}, context={"n": N, "synthesis_mode": mode}
    )
    served = vllm_server.requests_served() - before
    aggregation = result["decisions"]["aggregation"]
    boxed = [path["boxed"] for path in result["paths"]]
    check(mode, boxed, result["boxed_answer"], aggregation["by"], served)
    assert result["usage"]["synthesize"]["calls"] == served - N
    if aggregation["by"] == "weighted_vote":  # the surest answer's summed confidence wins
        weights: Counter[str] = Counter()
        for path in result["paths"]:
            weights[path["boxed"]] += path["confidence"]["mean"]
        assert result["boxed_answer"] == weights.most_common(1)[0][0]


async def test_vote_first_synthesizes_when_its_rule_cannot_be_met(voting, vllm_server):
    """A rule no split meets (5 of 4 paths): the synthesizer answers, whatever the paths say."""
    client = get_client(url=voting)
    before = vllm_server.requests_served()
    result: dict[str, Any] = await client.runs.wait(  # type: ignore[assignment]
        None,
        "a2r",
        input={"question": QUESTION},
        context={"n": N, "synthesis_mode": "vote_first", "vote_first": {"min_paths": 5}},
    )
    assert vllm_server.requests_served() - before == N + 1
    assert result["decisions"]["aggregation"]["by"] == "synthesizer"
    assert ">= 5 paths" in result["decisions"]["aggregation"]["why"]


@pytest.mark.parametrize("mode", MODES)
def test_the_openai_endpoint_runs_each_vote_mode(voting, vllm_server, mode):
    client = openai.OpenAI(base_url=f"{voting}/v1", api_key=SERVER_KEY, max_retries=0)
    before = vllm_server.requests_served()
    reply = client.chat.completions.create(
        model=f"a2r:n={N},synthesis_mode={mode}",
        messages=[{"role": "user", "content": QUESTION}],
    )
    served = vllm_server.requests_served() - before
    figures = reply.model_extra["a2r"]
    boxed = [path["boxed"] for path in figures["paths"]]
    check(mode, boxed, figures["boxed_answer"], figures["aggregation"]["by"], served)
    assert reply.choices[0].message.content.strip()


@pytest.mark.parametrize("mode", MODES)
async def test_an_mcp_call_runs_each_vote_mode(voting, vllm_server, mode):
    before = vllm_server.requests_served()
    async with mcp_session(f"{voting}/mcp", {"x-api-key": SERVER_KEY}) as session:
        result = await session.call_tool(
            "a2r", {"question": QUESTION, "n": N, "synthesis_mode": mode}
        )
    served = vllm_server.requests_served() - before
    assert not result.isError, result.content
    figures = result.structuredContent
    boxed = [path["boxed"] for path in figures["paths"]]
    check(mode, boxed, figures["boxed_answer"], figures["aggregation"]["by"], served)
