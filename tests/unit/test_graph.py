"""Graph logic with langchain-core fake chat models (no server)."""

import asyncio

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from a2r_graph import (
    EndpointUnavailableError,
    InvalidQuestionError,
    MissingUsageError,
    ModelRequestError,
    NotEnoughPathsError,
    build_graph,
)
from a2r_graph.errors import EndpointTimeoutError
from tests.fakes import (
    REQUEST,
    ScriptedChatModel,
    connection_error,
    explorer_replies,
    factory,
    make_context,
    reply,
    scripted,
)


def status_error(status, message):
    body = {"error": {"message": message, "code": status}}
    response = httpx.Response(status, request=REQUEST, json=body)
    return openai.APIStatusError(message, response=response, body=body["error"])


async def run(explorer_model, synthesizer_model, question="What is 6*7?", **context):
    graph = build_graph(factory(explorer_model, synthesizer_model))
    return await graph.ainvoke({"question": question}, context=make_context(**context))


async def test_n_paths_are_kept_in_order_with_traces_out_of_the_references():
    explorer = scripted(*explorer_replies(4))
    synthesizer = scripted(
        reply(
            "I checked: \\boxed{42}", reasoning="weighing refs", input_tokens=500, output_tokens=50
        )
    )
    result = await run(explorer, synthesizer, n=4)

    assert [p["index"] for p in result["paths"]] == [0, 1, 2, 3]
    assert len(explorer.calls) == 4 and len(synthesizer.calls) == 1
    prompt = synthesizer.calls[0][0]
    answers = sorted(p["answer"] for p in result["paths"])
    assert answers == [f"answer {i}: \\boxed{{{i}}}" for i in range(4)]
    for k, path in enumerate(result["paths"], 1):
        assert f"<reference{k}>\n{path['answer']}\n</reference{k}>" in prompt
        assert path["trace"] not in prompt  # traces never reach the synthesizer
    assert "What is 6*7?" in prompt
    assert result["answer"] == "I checked: \\boxed{42}"
    assert result["boxed_answer"] == "42"
    assert result["synthesis"]["trace"] == "weighing refs"


async def test_usage_and_cost_are_recorded_per_path_per_stage_and_in_total():
    explorer = scripted(*explorer_replies(3))
    synthesizer = scripted(reply("\\boxed{1}", input_tokens=321, output_tokens=12))
    result = await run(
        explorer,
        synthesizer,
        n=3,
        explorer={
            "model": "explorer-model",
            "input_price_per_mtok": 0.5,
            "output_price_per_mtok": 2,
        },
        synthesizer={
            "model": "synthesizer-model",
            "input_price_per_mtok": 1,
            "output_price_per_mtok": 4,
        },
    )
    # By hand: path i has 100+i input and 10(i+1) output tokens.
    assert [p["usage"]["cost"] for p in result["paths"]] == pytest.approx(
        [(100 * 0.5 + 10 * 2) / 1e6, (101 * 0.5 + 20 * 2) / 1e6, (102 * 0.5 + 30 * 2) / 1e6]
    )
    usage = result["usage"]
    assert usage["explore"] == {
        "calls": 3,
        "input_tokens": 303,
        "output_tokens": 60,
        "cost": pytest.approx(271.5e-6),
    }
    assert usage["synthesize"] == {
        "calls": 1,
        "input_tokens": 321,
        "output_tokens": 12,
        "cost": pytest.approx(369e-6),
    }
    assert usage["total"] == {
        "calls": 4,
        "input_tokens": 624,
        "output_tokens": 72,
        "cost": pytest.approx(640.5e-6),
    }


def test_cost_follows_the_papers_formula():
    from a2r_graph.context import StageConfig

    stage = StageConfig(model="m", input_price_per_mtok=0.2, output_price_per_mtok=0.8)
    assert stage.cost(1_000_000, 0) == pytest.approx(0.2)
    assert stage.cost(130, 18_600) == pytest.approx((130 * 0.2 + 18_600 * 0.8) / 1e6)
    assert StageConfig(model="m").cost(10**9, 10**9) == 0.0


class BarrierChatModel(ScriptedChatModel):
    """Answers only once `parties` calls are waiting at the same time."""

    parties: int = 0

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        barrier = self.__dict__.setdefault("_barrier", asyncio.Barrier(self.parties))
        await asyncio.wait_for(barrier.wait(), timeout=5)
        return self._generate(messages, **kwargs)


async def test_explorer_branches_run_concurrently():
    n = 8  # a sequential graph would time out at the barrier
    explorer = BarrierChatModel(messages=iter(explorer_replies(n)), parties=n)
    result = await run(explorer, scripted(reply("\\boxed{0}")), n=n)
    assert len(result["paths"]) == n


async def test_each_path_gets_its_own_seed_and_the_stage_sampling():
    explorer = scripted(*explorer_replies(3))
    synthesizer = scripted(reply("\\boxed{1}"))
    await run(
        explorer,
        synthesizer,
        n=3,
        explorer={"model": "explorer-model", "seed": 10, "temperature": 0.9, "max_tokens": 77},
        synthesizer={"model": "synthesizer-model", "seed": 3, "extra_body": {"top_k": 20}},
    )
    assert sorted(kwargs["seed"] for _, kwargs in explorer.calls) == [10, 11, 12]
    assert {(k["temperature"], k["max_tokens"]) for _, k in explorer.calls} == {(0.9, 77)}
    assert synthesizer.calls[0][1]["seed"] == 3
    assert synthesizer.calls[0][1]["extra_body"] == {"top_k": 20}


async def test_transient_errors_are_retried():
    explorer = scripted(connection_error(), status_error(503, "busy"), *explorer_replies(1))
    result = await run(explorer, scripted(reply("\\boxed{0}")), n=1, max_attempts=3)
    assert len(explorer.calls) == 3
    assert result["paths"][0]["error"] is None


async def test_rate_limit_is_retried():
    explorer = scripted(status_error(429, "slow down"), *explorer_replies(1))
    result = await run(explorer, scripted(reply("\\boxed{0}")), n=1)
    assert len(explorer.calls) == 2 and result["boxed_answer"] == "0"


async def test_client_error_is_not_retried_and_keeps_the_servers_message():
    explorer = scripted(status_error(404, "The model `nope` does not exist."), *explorer_replies(1))
    with pytest.raises(ModelRequestError) as caught:
        await run(explorer, scripted(), n=1)
    assert len(explorer.calls) == 1
    assert caught.value.status == 404
    assert "explorer request to http://127.0.0.1:8000/v1 (model 'explorer-model')" in str(
        caught.value
    )
    assert "The model `nope` does not exist." in str(caught.value)


async def test_failed_paths_below_min_paths_stop_the_run_with_every_reason():
    explorer = scripted(connection_error(), *explorer_replies(1))
    synthesizer = scripted()
    with pytest.raises(NotEnoughPathsError) as caught:
        await run(explorer, synthesizer, n=2, min_paths=2, max_attempts=1)
    error = caught.value
    assert (error.succeeded, error.min_paths) == (1, 2)
    assert len(error.failures) == 1
    assert (
        "explorer endpoint http://127.0.0.1:8000/v1 (model 'explorer-model') "
        "failed after 1 attempt(s)" in str(error)
    )
    assert synthesizer.calls == []


async def test_synthesis_proceeds_with_the_paths_that_succeeded():
    explorer = scripted(connection_error(), *explorer_replies(2))
    synthesizer = scripted(reply("\\boxed{9}"))
    result = await run(explorer, synthesizer, n=3, min_paths=2, max_attempts=1)
    failed = [p for p in result["paths"] if p["error"]]
    assert len(failed) == 1 and "failed after 1 attempt" in failed[0]["error"]
    prompt = synthesizer.calls[0][0]
    assert "<reference2>" in prompt and "<reference3>" not in prompt
    assert result["usage"]["explore"]["calls"] == 3


async def test_path_without_an_answer_component_is_unusable():
    truncated = reply("<think>never finished", finish_reason="length")
    explorer = scripted(truncated, *explorer_replies(1))
    synthesizer = scripted(reply("\\boxed{0}"))
    result = await run(explorer, synthesizer, n=2)
    bad = [p for p in result["paths"] if p["error"]]
    assert bad[0]["error"] == "no answer component (finish_reason=length)"
    assert bad[0]["trace"] == "never finished"
    assert "<reference2>" not in synthesizer.calls[0][0]


async def test_synthesizer_outage_fails_the_run_clearly():
    synthesizer = scripted(connection_error(), connection_error())
    with pytest.raises(
        EndpointUnavailableError, match="synthesizer endpoint .* failed after 2 attempt"
    ):
        await run(scripted(*explorer_replies(1)), synthesizer, n=1, max_attempts=2)


async def test_a_synthesizer_that_only_times_out_is_a_timeout_not_an_outage():
    """Catches: a timeout answered as a 503 (or its type found by matching the message)."""
    timeouts = scripted(openai.APITimeoutError(request=REQUEST), TimeoutError())
    with pytest.raises(EndpointTimeoutError, match="TimeoutError") as timed_out:
        await run(scripted(*explorer_replies(1)), timeouts, n=1, max_attempts=2)
    assert (timed_out.value.http_status, timed_out.value.openai_code) == (
        504,
        "model_server_timeout",
    )
    outage = scripted(openai.APITimeoutError(request=REQUEST), connection_error())
    with pytest.raises(EndpointUnavailableError) as unavailable:
        await run(scripted(*explorer_replies(1)), outage, n=1, max_attempts=2)
    assert type(unavailable.value) is EndpointUnavailableError  # the last attempt's cause
    assert unavailable.value.http_status == 503


async def test_reply_without_usage_is_an_error_not_an_estimate():
    explorer = scripted(AIMessage("\\boxed{1}"))
    with pytest.raises(MissingUsageError, match="no token usage"):
        await run(explorer, scripted(), n=1)


@pytest.mark.parametrize("question", ["", "   \n", None, 42])
async def test_empty_or_non_text_question_is_rejected(question):
    explorer = scripted()
    with pytest.raises(InvalidQuestionError, match="question must be a non-empty string"):
        await run(explorer, scripted(), question=question)
    assert explorer.calls == []


async def test_a_second_run_on_the_same_thread_starts_from_empty_results():
    explorer = scripted(*explorer_replies(4), *explorer_replies(2))
    synthesizer = scripted(reply("\\boxed{1}"), reply("\\boxed{2}"))
    graph = build_graph(factory(explorer, synthesizer), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"question": "first"}, config, context=make_context(n=4))
    second = await graph.ainvoke({"question": "second"}, config, context=make_context(n=2))
    assert [p["index"] for p in second["paths"]] == [0, 1]
    assert second["usage"]["explore"]["calls"] == 2
    assert second["question"] == "second" and second["boxed_answer"] == "2"


async def test_context_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("A2R_EXPLORER__MODEL", "explorer-model")
    monkeypatch.setenv("A2R_SYNTHESIZER__MODEL", "synthesizer-model")
    monkeypatch.setenv("A2R_N", "2")
    explorer = scripted(*explorer_replies(2))
    graph = build_graph(factory(explorer, scripted(reply("\\boxed{1}"))))
    result = await graph.ainvoke({"question": "q"})  # no context: A2R_* variables
    assert len(result["paths"]) == 2


def test_module_level_graph_is_compiled_with_the_a2r_shape():
    from a2r_graph import graph

    nodes = set(graph.get_graph().nodes)
    assert {"dispatch", "explore", "decide", "reduce", "synthesize"} <= nodes
    assert graph.name == "a2r"
    assert set(graph.get_output_jsonschema()["properties"]) == {
        "question",
        "answer",
        "boxed_answer",
        "paths",
        "synthesis",
        "reference_fit",
        "decisions",
        "usage",
    }
