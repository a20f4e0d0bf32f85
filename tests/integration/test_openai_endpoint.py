"""The OpenAI-compatible endpoint as its users meet it: the official ``openai`` client (sync,
async, streaming), curl, and LangChain's ``ChatOpenAI`` inside an agent, against a real
``langgraph dev`` (every request a run of the server's) and a real ``a2r serve`` (the graph
in-process), both over the loopback model server, whose own token counts the replies'
``usage`` must match; and once against the real vLLM server behind ``langgraph dev``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from examples.agent import build_agent
from tests.integration.a2r_serve import a2r_serve, loopback_env
from tests.integration.conftest import SERVER_KEY, langgraph_dev
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
QUESTION = "What is 17 + 25?"
ANSWER = "42"
USER = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def deployments(tmp_path_factory) -> Iterator[dict]:
    logs = tmp_path_factory.mktemp("openai-endpoint")
    with LoopbackServer(models=("explore", "synth")) as loop:
        env = loopback_env(loop)
        with (
            langgraph_dev(env, logs / "langgraph-dev.log") as (langgraph_url, _),
            a2r_serve(env, logs / "a2r-serve.log") as serve_url,
        ):
            yield {"langgraph dev": langgraph_url, "a2r serve": serve_url, "loop": loop}


@pytest.fixture(params=["langgraph dev", "a2r serve"])
def server(request, deployments) -> Iterator[dict]:
    loop: LoopbackServer = deployments["loop"]
    loop.clear_faults()
    yield {
        "url": deployments[request.param],
        "v1": deployments[request.param] + "/v1",
        "loop": loop,
    }
    loop.clear_faults()


def tokens_served(loop: LoopbackServer) -> tuple[int, int]:
    """(prompt, completion) tokens the loopback server has counted, over both models."""
    stats = loop.stats()
    return sum(stats["prompt_tokens"].values()), sum(stats["completion_tokens"].values())


def test_the_openai_client_gets_the_answer_and_the_usage_of_every_call(server):
    client = openai.OpenAI(base_url=server["v1"], api_key=SERVER_KEY, max_retries=0)
    before = tokens_served(server["loop"])
    reply = client.chat.completions.create(
        model="a2r",
        messages=[{"role": "system", "content": "Be brief."}, *USER],
    )
    after = tokens_served(server["loop"])
    content = reply.choices[0].message.content
    assert content.endswith(f"\\boxed{{{ANSWER}}}") and reply.choices[0].finish_reason == "stop"
    summary = reply.model_extra["a2r"]
    assert summary["boxed_answer"] == ANSWER
    assert [path["boxed"] for path in summary["paths"]] == [ANSWER, ANSWER]  # A2R_N=2
    total = summary["usage"]["total"]
    assert total["calls"] == 3  # two explorers and the synthesizer
    # usage is every call of the run, as the model server itself counted them
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        after[0] - before[0],
        after[1] - before[1],
    )
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.model_extra["cost"] == pytest.approx(total["cost"]) and total["cost"] > 0
    assert all(set(path) == {"index", "boxed", "error"} for path in summary["paths"])  # no traces
    assert next(model.id for model in client.models.list()) == "a2r"


async def test_the_async_client_passes_options_in_the_model_name_or_extra_body(server):
    client = openai.AsyncOpenAI(base_url=server["v1"], api_key=SERVER_KEY, max_retries=0)
    wide = await client.chat.completions.create(
        model="a2r:n=3,synthesizer.max_tokens=200", messages=USER
    )
    assert len(wide.model_extra["a2r"]["paths"]) == 3
    one = await client.chat.completions.create(
        model="a2r", messages=USER, extra_body={"a2r": {"n": 1}}
    )
    assert len(one.model_extra["a2r"]["paths"]) == 1
    assert one.model_extra["a2r"]["usage"]["total"]["calls"] == 2
    await client.close()


def test_streaming_sends_the_synthesizers_tokens_and_ends_with_usage(server):
    client = openai.OpenAI(base_url=server["v1"], api_key=SERVER_KEY, max_retries=0)
    before = tokens_served(server["loop"])
    chunks = list(
        client.chat.completions.create(
            model="a2r", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    after = tokens_served(server["loop"])
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    text = "".join(delta.content or "" for delta in deltas)
    assert text.strip().startswith("Checked 2 references.") and text.strip().endswith(
        f"\\boxed{{{ANSWER}}}"
    )
    assert sum(bool(delta.content) for delta in deltas) > 5  # token by token, not one piece
    assert any(delta.model_extra.get("reasoning_content") for delta in deltas)  # the synthesizer's
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        after[0] - before[0],
        after[1] - before[1],
    )


def test_curl_gets_answers_streams_and_errors(server):
    def curl(payload: dict, *extra: str) -> str:
        command = [
            "curl", "-sS", "-N", f"{server['v1']}/chat/completions",
            "-H", f"Authorization: Bearer {SERVER_KEY}",
            "-H", "content-type: application/json",
            "-d", json.dumps(payload), *extra,
        ]  # fmt: skip
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=True
        ).stdout

    reply = json.loads(curl({"model": "a2r", "messages": USER}))
    assert reply["choices"][0]["message"]["content"].endswith(f"\\boxed{{{ANSWER}}}")
    assert reply["usage"]["total_tokens"] > 0
    stream = curl({"model": "a2r", "messages": USER, "stream": True})
    events = [
        line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"
    status = curl(
        {"model": "a2r", "messages": [{"role": "user", "content": " "}]}, "-w", "\n%{http_code}"
    )
    body, code = status.rsplit("\n", 1)
    assert code == "400"
    assert json.loads(body)["error"]["param"] == "messages[0].content"


@pytest.mark.parametrize(
    ("request_fields", "error", "status", "param", "message"),
    [
        (
            {"messages": [{"role": "user", "content": "  "}]},
            openai.BadRequestError,
            400,
            "messages[0].content",
            "is blank",
        ),
        (
            {"model": "a2r:n=0"},
            openai.BadRequestError,
            400,
            "model",
            "n: Input should be greater than or equal to 1",
        ),
        (
            {"model": "a2r:explorer.base_url=http://10.0.0.1/v1"},
            openai.BadRequestError,
            400,
            None,
            "not an endpoint this server allows",
        ),
        (
            {"extra_body": {"a2r": {"prompts_dir": "/etc"}}},
            openai.BadRequestError,
            400,
            "a2r",
            "a2r.prompts_dir: set by the server's deployment",
        ),
        ({"n": 3}, openai.BadRequestError, 400, "n", "A2R returns one choice"),
        ({"model": "gpt-4o"}, openai.NotFoundError, 404, "model", "does not exist"),
    ],
)
def test_bad_requests_are_openai_errors_naming_the_field(
    server, request_fields, error, status, param, message
):
    client = openai.OpenAI(base_url=server["v1"], api_key=SERVER_KEY, max_retries=0)
    before = server["loop"].stats()
    with pytest.raises(error) as refused:
        client.chat.completions.create(**{"model": "a2r", "messages": USER, **request_fields})
    assert refused.value.status_code == status
    assert refused.value.body["param"] == param and message in refused.value.body["message"]
    assert refused.value.body["type"] == "invalid_request_error"
    assert server["loop"].stats() == before  # refused before any model call


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"model": "synth", "status": 500}, 503, "model_server_unavailable"),
        ({"model": "synth", "hang": True}, 504, "model_server_timeout"),
        ({"model": "synth", "status": 400}, 502, "model_request_rejected"),
        ({"model": "explore", "status": 503}, 503, "not_enough_paths"),
    ],
)
def test_model_server_failures_are_502_503_504(server, fault, status, code):
    client = openai.OpenAI(base_url=server["v1"], api_key=SERVER_KEY, max_retries=0)
    server["loop"].inject_fault(**fault, count=-1)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="a2r", messages=USER)
    assert failed.value.status_code == status and failed.value.body["code"] == code
    assert SERVER_KEY not in json.dumps(failed.value.body)
    if fault.get("hang"):
        return
    stream = client.chat.completions.create(model="a2r", messages=USER, stream=True)
    with pytest.raises(openai.APIError) as in_stream:
        list(stream)
    assert in_stream.value.body["code"] == code


def test_requests_need_the_servers_key(server):
    for key in ("wrong", ""):
        client = openai.OpenAI(base_url=server["v1"], api_key=key or "none", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="a2r", messages=USER)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


async def test_chat_openai_works_inside_an_agent(server):
    @tool
    def lookup(term: str) -> str:
        """Look a term up (A2R answers without calling tools)."""
        return term

    model = ChatOpenAI(model="a2r:n=2", base_url=server["v1"], api_key=SERVER_KEY, max_retries=0)
    result = await build_agent(model, [lookup]).ainvoke({"messages": [("user", QUESTION)]})
    answer = result["messages"][-1]
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    assert answer.content.endswith(f"\\boxed{{{ANSWER}}}")
    assert answer.usage_metadata["input_tokens"] > 0 and answer.usage_metadata["output_tokens"] > 0

    streaming = ChatOpenAI(
        model="a2r", base_url=server["v1"], api_key=SERVER_KEY, stream_usage=True
    )
    chunks = [chunk async for chunk in streaming.astream(QUESTION)]
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.text.strip().endswith(f"\\boxed{{{ANSWER}}}")
    assert whole.usage_metadata["total_tokens"] > 0


def test_the_endpoint_over_a_real_vllm_server(langgraph_server, vllm_server):
    """The real model server behind ``langgraph dev``: usage is what vLLM counted."""
    client = openai.OpenAI(base_url=f"{langgraph_server}/v1", api_key=SERVER_KEY, max_retries=0)
    before = vllm_server.token_counters()
    reply = client.chat.completions.create(model="a2r:n=2", messages=USER, max_tokens=32)
    after = vllm_server.token_counters()
    assert reply.choices[0].message.content.strip()
    total = reply.model_extra["a2r"]["usage"]["total"]
    assert total["calls"] == 3 and total["cost"] > 0
    assert (
        reply.usage.prompt_tokens
        == after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]
    )
    assert reply.usage.completion_tokens == (
        after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    )
    before = vllm_server.token_counters()
    chunks = list(
        client.chat.completions.create(
            model="a2r:n=2",
            messages=USER,
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    after = vllm_server.token_counters()
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas).strip()
    assert sum(map(bool, deltas)) > 1  # the synthesizer's tokens as vLLM streamed them
    assert chunks[-2].choices[0].finish_reason in {"stop", "length"}
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.prompt_tokens == (
        after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]
    )
    assert usage.completion_tokens == (
        after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    )


def test_an_error_inside_a_stream_over_a_real_vllm_server(serve_over_vllm, vllm_server):
    """A synthesizer the real server does not serve fails after the explorers streamed
    nothing: the stream carries OpenAI's error, with vLLM's own words, not a cut connection."""
    client = openai.OpenAI(base_url=f"{serve_over_vllm}/v1", api_key=SERVER_KEY, max_retries=0)
    served = vllm_server.requests_served()
    stream = client.chat.completions.create(
        model="a2r:n=2,synthesizer.model=nope",
        messages=USER,
        stream=True,
    )
    with pytest.raises(openai.APIError, match="nope.*does not exist") as failed:
        list(stream)
    assert "HTTP 404" in str(failed.value)
    assert vllm_server.requests_served() - served == 2  # the explorers ran on vLLM


def test_select_mode_streams_its_deliberation_as_reasoning_over_a_real_vllm_server(
    serve_over_vllm,
):
    """In select mode the synthesizer's text is deliberation: over the real server it streams
    as ``reasoning_content`` deltas, and the answer (a reference's) as content."""
    client = openai.OpenAI(base_url=f"{serve_over_vllm}/v1", api_key=SERVER_KEY, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="a2r:n=2,synthesis_mode=select", messages=USER, stream=True
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = [d.model_extra.get("reasoning_content") or "" for d in deltas]
    assert sum(map(bool, reasoning)) > 1  # vLLM's tokens, one delta at a time
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
