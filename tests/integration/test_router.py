"""Replicas behind vllm-router (consistent hashing on the graph's session header): all N
explorers of a run reach one replica, and runs spread over the replicas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from a2r_graph import A2RContext, build_graph
from servers.loopback import LoopbackServer
from servers.router import VllmRouter

pytestmark = pytest.mark.integration
RUNS = 16  # all on one replica by chance: 2 * 0.5**16


@pytest.fixture
def replicas() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    with LoopbackServer(models=("explore",)) as a, LoopbackServer(models=("explore",)) as b:
        yield a, b


def explored(replica: LoopbackServer) -> int:
    return replica.stats()["completed"].get("explore", 0)


async def test_a_runs_explorers_share_a_replica_and_runs_spread(replicas):
    with (
        LoopbackServer(models=("synth",)) as synthesizer,
        VllmRouter([r.base_url for r in replicas]) as router,
    ):
        context = A2RContext(
            explorer={"base_url": router.base_url, "model": "explore"},
            synthesizer={"base_url": synthesizer.base_url, "model": "synth"},
            n=4,
            max_attempts=1,
        )
        graph = build_graph(checkpointer=InMemorySaver())
        landed = []
        for run in range(RUNS):
            before = [explored(r) for r in replicas]
            config = {"configurable": {"thread_id": f"run-{run}"}}
            result = await graph.ainvoke({"question": "What is 17 + 25?"}, config, context=context)
            assert result["boxed_answer"] == "42"
            landed.append([explored(r) - b for r, b in zip(replicas, before, strict=True)])
    assert all(sorted(counts) == [0, 4] for counts in landed), landed  # one replica per run
    assert {counts.index(4) for counts in landed} == {0, 1}, landed  # and both replicas used
