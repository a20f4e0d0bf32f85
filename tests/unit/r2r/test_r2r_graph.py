"""The routed loop over scripted servers (tests/r2r_fakes.py): who writes which token, what
each model's calls cost, and what a run does when a server fails, stalls or must be cut off."""

from __future__ import annotations

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from a2r_graph.errors import (
    ConfigurationError,
    EndpointTimeoutError,
    EndpointUnavailableError,
    ModelRequestError,
)
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.graph import build_r2r_graph
from tests.metric_points import points, total
from tests.r2r_fakes import FakeServer, Fault, servers_for

SLM_TEXT = "So 6*7 is \\boxed{41}."
LLM_TEXT = "So 6*7 is \\boxed{42}!"
DIVERGE = SLM_TEXT.index("1}")
"""Where the SLM goes wrong ("1" where the LLM says "2"): it is unsure there."""
END = len(SLM_TEXT)
"""The SLM's end-of-turn token's position."""


def pair(slm_unsure=(DIVERGE,), **slm_options) -> tuple[FakeServer, FakeServer]:
    slm = FakeServer("slm-0.5b", SLM_TEXT, unsure=set(slm_unsure), **slm_options)
    return slm, FakeServer("llm-1.5b", LLM_TEXT)


def context(slm: FakeServer, llm: FakeServer, **r2r) -> R2RContext:
    return R2RContext(
        explorer=slm.stage(input_price_per_mtok=1e6, output_price_per_mtok=2e6),
        synthesizer=llm.stage(input_price_per_mtok=10e6, output_price_per_mtok=20e6),
        r2r=r2r,
        max_attempts=3,
        retry_initial_wait_s=0,
        retry_max_wait_s=0,
        request_timeout_s=0.5,
    )


async def run(slm: FakeServer, llm: FakeServer, ctx: R2RContext | None = None, **kwargs):
    graph = build_r2r_graph(servers=servers_for(slm, llm), **kwargs)
    return await graph.ainvoke({"question": "6*7?"}, context=ctx or context(slm, llm))


async def test_the_llm_writes_exactly_the_flagged_positions():
    """Catches: a flagged token kept (the SLM's mistake stays), the LLM's token appended
    after it instead of in its place, or the SLM not resuming after the switch."""
    slm, llm = pair()
    out = await run(slm, llm)
    assert out["answer"] == "So 6*7 is \\boxed{42}."
    assert out["boxed_answer"] == "42"
    assert out["switches"] == 1
    assert out["tokens"] == {"slm": END, "llm": 1}  # END - 1 characters and the SLM's EOS
    assert out["finish_reason"] == "stop"


async def test_each_models_tokens_and_cost_are_what_its_server_reported():
    """Catches: usage summed across models, the aborted stream's tokens dropped (the SLM
    generated the flagged token too), cached input billed at the full price, or a total that
    is not the sum of the models."""
    slm, llm = pair()
    ctx = context(slm, llm, slm_cached_input_price_per_mtok=0.0)
    out = await run(slm, llm, ctx)
    usage, cached = out["usage"], out["cached_input_tokens"]
    prompt = len(slm.requests[0]["prompt"])
    # SLM: call 1 streams positions 0..DIVERGE (flagged there), call 2 from DIVERGE + 1 to END
    slm_out = (DIVERGE + 1) + (END - DIVERGE)
    assert usage["slm"]["calls"] == 2 and slm.generated == usage["slm"]["output_tokens"] == slm_out
    assert usage["slm"]["input_tokens"] == prompt + (prompt + DIVERGE + 1)
    assert usage["llm"] == {
        "calls": 1,
        "input_tokens": prompt + DIVERGE,
        "output_tokens": 1,
        "cost": pytest.approx((prompt + DIVERGE) * 10 + 20),  # no cached price: the input's
    }
    assert cached["slm"] > 0 and llm.generated == 1
    uncached = usage["slm"]["input_tokens"] - cached["slm"]
    assert usage["slm"]["cost"] == pytest.approx(uncached * 1 + slm_out * 2)
    assert usage["total"]["cost"] == pytest.approx(usage["slm"]["cost"] + usage["llm"]["cost"])
    assert usage["total"]["output_tokens"] == slm_out + 1 and usage["total"]["calls"] == 3
    assert cached["total"] == cached["slm"] + cached["llm"]


async def test_the_slm_stream_is_closed_at_the_flagged_token():
    """Catches: a client that reads the SLM's stream to its end after a flag (the server
    goes on generating what is thrown away) or never closes it."""
    slm, llm = pair(slm_unsure=(3,))
    await run(slm, llm)
    first = slm.requests[0]
    assert first["stream"] is True and first["max_tokens"] > 4
    assert slm.closed_streams == 2 and slm.finished_streams == 1
    assert slm.generated == 4 + (END + 1 - 4)


async def test_vllm_dialect_token_ids_are_read_the_same():
    """Catches: a client that reads only llama.cpp's logprobs (vLLM spells tokens
    ``token_id:N`` in legacy lists) and so routes nothing or the wrong ids."""
    slm, llm = pair(engine="vllm")
    llm.engine = "vllm"
    out = await run(slm, llm)
    assert out["answer"] == "So 6*7 is \\boxed{42}." and out["switches"] == 1
    assert slm.requests[0]["return_tokens_as_token_ids"] is True
    assert "timings_per_token" not in slm.requests[0]


async def test_several_llm_tokens_per_switch():
    """Catches: ``llm_tokens_per_switch`` ignored (R2R's one token hard-wired)."""
    slm, llm = pair()
    out = await run(slm, llm, context(slm, llm, llm_tokens_per_switch=3))
    assert out["answer"] == "So 6*7 is \\boxed{42}!" and out["tokens"]["llm"] == 3
    assert llm.requests[0]["max_tokens"] == 3


async def test_max_tokens_caps_both_models_output():
    """Catches: a run that overruns its token budget through the LLM's tokens or a fresh
    SLM call per segment with the whole budget."""
    slm, llm = pair(slm_unsure=(3, 5))
    out = await run(slm, llm, context(slm, llm, max_tokens=5))
    assert sum(out["tokens"].values()) == 5 and out["finish_reason"] == "length"
    assert out["answer"] == LLM_TEXT[:5][:3] + LLM_TEXT[3] + SLM_TEXT[4]
    assert all(r["max_tokens"] <= 5 for r in slm.requests + llm.requests)


async def test_models_with_different_tokenizers_are_refused_by_name():
    """Catches: a pair whose token ids mean different text to each model: the LLM would
    continue gibberish, silently."""
    slm, llm = pair()
    llm.shift = 3
    with pytest.raises(ConfigurationError) as refused:
        await run(slm, llm)
    message = str(refused.value)
    assert "'slm-0.5b'" in message and "'llm-1.5b'" in message and "share a tokenizer" in message
    assert slm.requests == [] and llm.requests == []


async def test_different_vocabulary_sizes_are_refused():
    """Catches: a check that compares only a short probe, passing two tokenizers that agree
    on it but not on the rest of their vocabularies."""
    slm, llm = pair()
    llm.vocab = 151_936
    with pytest.raises(ConfigurationError, match="vocabularies of 50000 and 151936 tokens"):
        await run(slm, llm)


async def test_a_stream_that_dies_mid_way_continues_after_its_last_token():
    """Catches: a dropped connection failing the run, or the retry starting the segment
    over (tokens paid twice, or written twice into the answer)."""
    slm, llm = pair(fault=Fault(die_after=5))
    out = await run(slm, llm)
    assert out["answer"] == "So 6*7 is \\boxed{42}."
    retried = slm.requests[1]["prompt"]
    assert len(retried) == len(slm.requests[0]["prompt"]) + 5
    assert out["usage"]["slm"]["output_tokens"] == slm.generated


async def test_a_stalled_stream_times_out_and_is_retried():
    """Catches: a server that stops sending mid-stream hanging the run for ever."""
    slm, llm = pair(fault=Fault(stall_after=2))
    out = await run(slm, llm)
    assert out["answer"] == "So 6*7 is \\boxed{42}." and len(slm.requests) == 3


async def test_a_server_that_stays_down_fails_the_run_naming_it():
    """Catches: endless retries, or an error that does not say which model failed."""
    slm, llm = pair()
    llm.fault = Fault(status=503, times=10)
    with pytest.raises(EndpointUnavailableError, match=r"LLM endpoint .*llm-1\.5b.* 3 attempt"):
        await run(slm, llm)
    assert len(llm.requests) == 3


async def test_a_stall_every_time_is_a_timeout_error():
    """Catches: a stall reported as a generic failure (a door answers 504 for timeouts)."""
    slm, llm = pair(fault=Fault(stall_after=0, times=10))
    with pytest.raises(EndpointTimeoutError):
        await run(slm, llm)


async def test_a_rejected_request_is_not_retried():
    """Catches: a 4xx (a bad request: retrying cannot fix it) retried until the budget ends."""
    slm, llm = pair(fault=Fault(status=400, times=10))
    with pytest.raises(ModelRequestError, match="HTTP 400"):
        await run(slm, llm)
    assert len(slm.requests) == 1


def fail_after_first_switch(llm: FakeServer) -> None:
    """The LLM answers the first switch, then fails every request (503) until repaired."""
    answer = llm.handle

    async def handle(request):
        if request.url.path == "/v1/completions" and llm.generated >= 1:
            llm.fault = Fault(status=503, times=1)
        return await answer(request)

    llm.handle = handle  # type: ignore[method-assign]


def repair(llm: FakeServer) -> None:
    del llm.handle  # the class's own again
    llm.fault = None


async def killed_at_second_switch(slm, llm, thread_id: str):
    """A run on a checkpointed graph, killed by the LLM's failure at its second switch."""
    graph = build_r2r_graph(servers=servers_for(slm, llm), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": thread_id}}
    fail_after_first_switch(llm)
    with pytest.raises(EndpointUnavailableError):
        await graph.ainvoke({"question": "6*7?"}, config, context=context(slm, llm))
    saved = (await graph.aget_state(config)).values
    assert len(saved["output_ids"]) == 4 and saved["switches"] == 1
    repair(llm)
    return graph, config


async def test_a_run_killed_mid_way_resumes_from_its_saved_prefix():
    """Catches: a resumed run that starts over, paying again for every token it had."""
    slm, llm = pair(slm_unsure=(3, 9, DIVERGE))
    graph, config = await killed_at_second_switch(slm, llm, "t1")
    slm_before = slm.generated
    out = await graph.ainvoke(None, config, context=context(slm, llm))
    assert out["answer"] == "So 6*7 is \\boxed{42}." and out["switches"] == 3
    # it resumed at position 4: positions 4..9 again (the failed step's segment was not
    # saved), never 0..3
    assert slm.generated - slm_before == (9 - 4 + 1) + (DIVERGE - 10 + 1) + (END - DIVERGE)
    assert out["usage"]["llm"]["calls"] == 3


async def test_the_same_question_again_on_a_thread_goes_on_from_its_prefix():
    """Catches: a rerun of an unfinished run (as a door retries it) that starts over."""
    slm, llm = pair(slm_unsure=(3, 9))
    graph, config = await killed_at_second_switch(slm, llm, "t2")
    asked = len(slm.requests)
    out = await graph.ainvoke({"question": "6*7?"}, config, context=context(slm, llm))
    assert out["switches"] == 2 and out["answer"] == "So 6*7 is \\boxed{41}."
    assert len(slm.requests[asked]["prompt"]) == len(slm.requests[0]["prompt"]) + 4


async def test_another_question_on_the_thread_starts_afresh():
    """Catches: a saved prefix continued under another question."""
    slm, llm = pair(slm_unsure=(3, 9))
    graph, config = await killed_at_second_switch(slm, llm, "t3")
    out = await graph.ainvoke({"question": "7*6?"}, config, context=context(slm, llm))
    assert out["question"] == "7*6?" and out["switches"] == 2
    assert out["tokens"] == {"slm": END - 1, "llm": 2}


async def test_the_stream_says_which_model_wrote_each_token():
    """Catches: streamed text without its author, or text streamed that the answer lacks
    (a flagged token shown as written)."""
    slm, llm = pair()
    graph = build_r2r_graph(servers=servers_for(slm, llm))
    written = [
        chunk
        async for chunk in graph.astream(
            {"question": "6*7?"}, context=context(slm, llm), stream_mode="custom"
        )
    ]
    assert "".join(c["text"] for c in written) == "So 6*7 is \\boxed{42}."
    assert [c["text"] for c in written if c["model"] == "llm"] == ["2"]
    assert all(len(c["token_ids"]) >= 1 for c in written)


async def test_each_model_call_has_a_span_with_its_usage():
    """Catches: model calls missing from traces, or spans that do not say which model (SLM
    or LLM) a call went to and what it cost."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    slm, llm = pair()
    out = await run(slm, llm, tracer_provider=provider)
    calls = [s for s in exporter.get_finished_spans() if s.name.startswith("text_completion")]
    by_stage = {
        stage: [s for s in calls if s.attributes["a2r.stage"] == stage] for stage in ("slm", "llm")
    }
    assert len(by_stage["slm"]) == 2 and len(by_stage["llm"]) == 1
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in by_stage["slm"]) == END + 1
    result = next(s for s in exporter.get_finished_spans() if s.name == "r2r.result")
    assert result.attributes["a2r.r2r.switches"] == 1
    assert result.attributes["a2r.r2r.llm_share"] == pytest.approx(1 / sum(out["tokens"].values()))


async def test_metrics_by_model_add_up_to_the_runs_usage():
    """Catches: metrics that lump both models together, or that miss the aborted SLM
    streams (a dashboard's cost per model would disagree with the runs)."""
    reader = InMemoryMetricReader()
    slm, llm = pair(fault=Fault(die_after=5))
    out = await run(slm, llm, meter_provider=MeterProvider(metric_readers=[reader]))
    data = points(reader)
    for model in ("slm", "llm"):
        usage = out["usage"][model]
        for kind, key in (("input", "input_tokens"), ("output", "output_tokens")):
            counted = total(
                data, "gen_ai.client.token.usage", **{"a2r.stage": model, "gen_ai.token.type": kind}
            )
            assert counted == usage[key]
        assert total(data, "a2r.cost", **{"a2r.stage": model}) == pytest.approx(usage["cost"])
    assert total(data, "gen_ai.client.operation.duration", **{"error.type": "RemoteProtocolError"})


async def test_a_stream_cut_after_its_finish_is_not_asked_again():
    """Catches: a retry after a stream that ended (finish_reason seen) but lost its [DONE]:
    the SLM would be asked to write past its own end-of-turn token."""
    slm, llm = pair()
    answer = slm.handle
    cut = {"done": False}

    async def handle(request):
        response = await answer(request)
        if request.url.path == "/v1/completions" and len(slm.requests) == 2 and not cut["done"]:
            cut["done"] = True
            body = [event async for event in response.stream]
            text = b"".join(body).replace(b"data: [DONE]\n\n", b"")
            return httpx.Response(200, content=text)
        return response

    slm.handle = handle  # type: ignore[method-assign]
    out = await run(slm, llm)
    assert out["answer"] == "So 6*7 is \\boxed{42}." and len(slm.requests) == 2
