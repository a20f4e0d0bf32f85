"""The A2R graph against a real vLLM server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from a2r_graph import (
    EndpointUnavailableError,
    ModelRequestError,
    NotEnoughPathsError,
    graph,
    last_boxed,
)

pytestmark = pytest.mark.integration
QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"


def tokenize(server, prompt: str) -> int:
    """Ask the server how many tokens this one-message chat prompt is."""
    body = json.dumps(
        {"model": server.model_name, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    request = urllib.request.Request(
        f"{server.root}/tokenize", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["count"]


async def test_four_paths_then_synthesis_with_the_servers_token_counts(vllm_server, context_for):
    before = vllm_server.token_counters()
    result = await graph.ainvoke({"question": QUESTION}, context=context_for(n=4))
    after = vllm_server.token_counters()

    paths = result["paths"]
    assert [p["index"] for p in paths] == [0, 1, 2, 3]
    assert all(p["error"] is None and p["answer"].strip() for p in paths)
    assert all(p["usage"]["output_tokens"] > 0 for p in paths)
    assert len({p["answer"] for p in paths}) > 1, "paths with distinct seeds should differ"

    usage = result["usage"]
    assert usage["explore"]["calls"] == 4 and usage["synthesize"]["calls"] == 1
    recorded_in = usage["explore"]["input_tokens"] + usage["synthesize"]["input_tokens"]
    recorded_out = usage["explore"]["output_tokens"] + usage["synthesize"]["output_tokens"]
    assert recorded_in == after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]
    assert recorded_out == (
        after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    )

    synthesis = result["synthesis"]
    assert synthesis["answer"] == result["answer"] and result["answer"].strip()
    assert result["boxed_answer"] == last_boxed(result["answer"])


async def test_synthesizer_receives_every_reference(vllm_server, context_for):
    from a2r_graph import build_graph
    from a2r_graph.prompts import render_synthesizer_prompt

    result = await build_graph().ainvoke({"question": QUESTION}, context=context_for(n=4))
    prompt = render_synthesizer_prompt(QUESTION, [p["answer"] for p in result["paths"]])
    for k, path in enumerate(result["paths"], 1):
        assert f"<reference{k}>\n{path['answer'].strip()}\n</reference{k}>" in prompt
    # The server counted exactly this prompt's tokens for the synthesizer call.
    assert result["synthesis"]["usage"]["input_tokens"] == tokenize(vllm_server, prompt)


async def test_unknown_model_fails_at_once_with_the_servers_message(vllm_server, context_for):
    explorer = {"base_url": vllm_server.base_url, "model": "no-such-model", "max_tokens": 8}
    # A retry would first wait 600 s: the 4xx must fail at once, far inside the 300 s.
    with pytest.raises(ModelRequestError) as caught:
        async with asyncio.timeout(300):
            await graph.ainvoke(
                {"question": QUESTION},
                context=context_for(
                    explorer=explorer,
                    retry_initial_wait_s=600,
                    retry_max_wait_s=600,
                    max_attempts=4,
                ),
            )
    assert caught.value.status == 404
    assert "no-such-model" in caught.value.server_message
    assert "does not exist" in caught.value.server_message


async def test_dead_explorer_endpoint_is_retried_then_fails_clearly(context_for, dead_endpoint):
    dead = dead_endpoint
    started = time.monotonic()
    with pytest.raises(NotEnoughPathsError) as caught:
        await graph.ainvoke(
            {"question": QUESTION},
            context=context_for(
                explorer={"base_url": dead, "model": "m"},
                n=2,
                max_attempts=3,
                retry_initial_wait_s=0.2,
            ),
        )
    assert time.monotonic() - started >= 0.2 + 0.4, "two backoff waits between three attempts"
    message = str(caught.value)
    assert f"explorer endpoint {dead} (model 'm') failed after 3 attempt(s)" in message
    assert "ConnectionError" in message
    assert sorted(caught.value.failures) == [0, 1]


async def test_dead_synthesizer_endpoint_fails_after_explorers(context_for, dead_endpoint):
    dead = dead_endpoint
    with pytest.raises(EndpointUnavailableError, match=rf"synthesizer endpoint {dead}") as caught:
        await graph.ainvoke(
            {"question": QUESTION},
            context=context_for(synthesizer={"base_url": dead, "model": "m"}, n=2, max_attempts=2),
        )
    assert caught.value.attempts == 2


def test_cli_prints_answers_and_the_token_table(vllm_server):
    env = {
        **os.environ,
        "A2R_EXPLORER__BASE_URL": vllm_server.base_url,
        "A2R_EXPLORER__MODEL": vllm_server.model_name,
        "A2R_SYNTHESIZER__BASE_URL": vllm_server.base_url,
        "A2R_SYNTHESIZER__MODEL": vllm_server.model_name,
        "A2R_EXPLORER__INPUT_PRICE_PER_MTOK": "0.5",
        "A2R_EXPLORER__OUTPUT_PRICE_PER_MTOK": "2",
        "A2R_SYNTHESIZER__INPUT_PRICE_PER_MTOK": "0.5",
        "A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK": "2",
    }
    command = [
        sys.executable,
        "-m",
        "a2r_graph.serving.cli",
        "ask",
        QUESTION,
        "--n",
        "2",
        "--max-tokens",
        "24",
    ]
    shown = subprocess.run(
        command, env=env, check=False, capture_output=True, text=True, timeout=300
    )
    assert shown.returncode == 0, shown.stderr
    assert "Explorers: 2/2 usable" in shown.stdout
    assert "Synthesizer answer:" in shown.stdout and "Final answer:" in shown.stdout
    rows = {
        line.split()[0]: line.split()[1:]
        for line in shown.stdout.splitlines()
        if line.split()[:1] in (["explore"], ["synthesize"], ["total"])
    }
    assert rows["explore"][0] == "2" and rows["synthesize"][0] == "1" and rows["total"][0] == "3"
    assert int(rows["total"][1]) == int(rows["explore"][1]) + int(rows["synthesize"][1])
    assert all(int(value) > 0 for row in rows.values() for value in row[:3])
    # prices: 0.5 in / 2.0 out per 1M tokens for both stages (set below)
    for stage, row in rows.items():
        expected = (int(row[1]) * 0.5 + int(row[2]) * 2.0) / 1e6
        assert float(row[3]) == pytest.approx(expected, abs=1e-6), stage

    as_json = subprocess.run(
        [*command, "--json"], env=env, check=False, capture_output=True, text=True, timeout=300
    )
    result = json.loads(as_json.stdout)
    assert len(result["paths"]) == 2 and result["usage"]["synthesize"]["output_tokens"] > 0


async def test_agent_calls_the_a2r_tool_backed_by_the_real_server(context_for):
    from langchain_core.messages import AIMessage, ToolMessage

    from a2r_graph.serving.tool import as_tool
    from examples.agent import build_agent
    from tests.fakes import ToolCallingFake

    tool = as_tool(context=context_for(n=2).model_dump(mode="json"))
    call = {"name": "a2r_reason", "args": {"question": QUESTION}, "id": "call-1"}
    agent_model = ToolCallingFake(
        messages=iter([AIMessage("", tool_calls=[call]), AIMessage("done")])
    )
    result = await build_agent(agent_model, [tool]).ainvoke({"messages": [("user", QUESTION)]})
    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_message.status == "success", tool_message.content
    assert tool_message.content.startswith("Final answer:")
    assert len(tool_message.artifact["paths"]) == 2
    assert tool_message.artifact["usage"]["synthesize"]["output_tokens"] > 0
