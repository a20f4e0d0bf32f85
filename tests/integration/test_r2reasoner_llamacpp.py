"""R2-Reasoner's mechanics on two real llama.cpp servers (the same small model plays both
tiers): the plan is constrained by the server's grammar, subtasks reach the tier the
allocator chose, and what a run reports for each tier is what that server counted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from a2r_graph.calls import complete
from a2r_graph.chat_models import vllm_chat_model
from a2r_graph.r2reasoner.context import ReasonerContext
from a2r_graph.r2reasoner.graph import build_reasoner_graph
from a2r_graph.r2reasoner.plan import Plan, plan_schema
from servers.engines import EmbeddedLlamaCpp, allowed_cpus
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

PREDICTED = "llamacpp:tokens_predicted_total"
PROMPT = "llamacpp:prompt_tokens_total"
CACHED = "llamacpp:prompt_tokens_cached_total"
QUESTION = "Tom has 3 boxes of 4 apples and eats 2 apples. How many apples are left?"


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[Server, Server]]:
    cpus = allowed_cpus()
    halves = [cpus[: len(cpus) // 2], cpus[len(cpus) // 2 :]] if len(cpus) > 1 else [None, None]
    with (
        EmbeddedLlamaCpp("smollm2-135m", slots=2, cpus=halves[0]) as small,
        EmbeddedLlamaCpp("smollm2-135m", slots=2, cpus=halves[1]) as large,
    ):
        yield Server(small.base_url, small.model_name), Server(large.base_url, large.model_name)


def reasoner_context(small: Server, large: Server, **settings) -> ReasonerContext:
    stage = {"temperature": 0.0, "max_tokens": 64, "output_price_per_mtok": 1.0}
    return ReasonerContext(
        tiers=[
            {"name": "small", "base_url": small.base_url, "model": small.model_name, **stage},
            {"name": "large", "base_url": large.base_url, "model": large.model_name, **stage},
        ],
        r2reasoner={"max_depth": 16, "plan_attempts": 3, "plan_max_tokens": 256, **settings},
        request_timeout_s=120,
    )


def counted(server: Server, before: dict[str, float]) -> dict[str, int]:
    after = server.counters(PREDICTED, PROMPT, CACHED)
    return {name: round(after[name] - before[name]) for name in before}


async def test_the_server_constrains_the_plan_to_the_schema(two_servers):
    """Catches: ``response_format`` not reaching the server, or a schema llama.cpp cannot
    turn into a grammar (a 400): asked for a sentence, the model writes one, unless the
    server holds it to the plan's schema."""
    small, _ = two_servers
    context = reasoner_context(small, small)
    tier = context.tiers[0].model_copy(update={"max_tokens": 512})
    prompt = "Say hello to Ada in one short sentence."
    plain = await complete(vllm_chat_model(tier, 120), prompt, "small", tier, context)
    constrained = await complete(
        vllm_chat_model(tier, 120), prompt, "small", tier, context, json_schema=plan_schema(1)
    )
    print(f"\nunconstrained: {plain['answer'][:200]!r}\nconstrained: {constrained['answer']!r}")
    with pytest.raises(ValueError):
        Plan.model_validate_json(plain["answer"])
    plan = Plan.model_validate_json(constrained["answer"])
    assert len(plan.subtasks) == 1


@pytest.mark.parametrize("start", ["smallest", "largest"])
async def test_subtasks_reach_the_chosen_tier_and_each_server_counts_what_the_run_reports(
    two_servers, start
):
    """Catches: a subtask sent to another tier than the allocator's, or a tier's calls
    missing from (or double-counted in) the run's usage."""
    small, large = two_servers
    before = {s: s.counters(PREDICTED, PROMPT, CACHED) for s in (small, large)}
    out = await build_reasoner_graph().ainvoke(
        {"question": QUESTION}, context=reasoner_context(small, large, start=start)
    )
    servers = {"small": counted(small, before[small]), "large": counted(large, before[large])}
    usage = out["usage"]
    print(f"\nplan {out['plan']}; subtasks {[(s['id'], s['tier']) for s in out['subtasks']]}")
    print(f"usage {usage}; servers counted {servers}")
    assert out["plan"]["status"] == "ok", out["plan"]
    assert {s["tier"] for s in out["subtasks"]} == {"small" if start == "smallest" else "large"}
    subtask_calls = len(out["subtasks"])
    plan_and_summary = out["plan"]["attempts"] + 1
    expected_calls = {
        "small": subtask_calls if start == "smallest" else 0,
        "large": plan_and_summary + (subtask_calls if start == "largest" else 0),
    }
    for tier, server in servers.items():
        assert usage[tier]["calls"] == expected_calls[tier]
        assert server[PREDICTED] == usage[tier]["output_tokens"]
        assert server[PROMPT] + server[CACHED] == usage[tier]["input_tokens"]
