"""The graph served by a real LangGraph Server (`langgraph dev`) over a real vLLM server."""

from __future__ import annotations

import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client

from a2r_graph import A2ROutput, graph
from a2r_graph.serving.tool import as_tool
from tests.integration.conftest import AUTH, SERVER_KEY

pytestmark = pytest.mark.integration
QUESTION = "A box holds 6 eggs. How many eggs are in 4 boxes?"


async def test_runs_wait_returns_the_answer_with_usage(langgraph_server):
    client = get_client(url=langgraph_server)
    thread = await client.threads.create()
    result = await client.runs.wait(
        thread["thread_id"], "a2r", input={"question": QUESTION}, context={"n": 3}
    )
    assert set(result) == set(A2ROutput.__annotations__)  # the graph's own output schema
    assert len(result["paths"]) == 3 and result["answer"].strip()
    assert result["usage"]["explore"]["calls"] == 3
    assert result["usage"]["synthesize"]["output_tokens"] > 0
    state = await client.threads.get_state(thread["thread_id"])
    assert "<reference3>" in state["values"]["synthesizer_prompt"]


async def stream(url: str, n: int, modes: list[str]):
    """A stateless streamed run of the a2r graph with N explorers."""
    client = get_client(url=url)
    async for part in client.runs.stream(
        None, "a2r", input={"question": QUESTION}, context={"n": n}, stream_mode=modes
    ):
        yield part


async def test_stream_updates_come_stage_by_stage(langgraph_server):
    nodes, progress = [], []
    async for part in stream(langgraph_server, 2, ["updates", "custom"]):
        if part.event == "updates":
            nodes.extend(part.data)
        elif part.event == "custom":
            progress.append(part.data)
    assert nodes == ["dispatch", "explore", "explore", "decide", "reduce", "synthesize"]
    assert sorted(event["index"] for event in progress) == [0, 1]
    assert all(event["event"] == "explorer_done" and event["n"] == 2 for event in progress)


async def test_synthesizer_tokens_stream_as_messages(langgraph_server):
    streamed: dict[str, str] = {}
    final = None
    async for part in stream(langgraph_server, 1, ["messages-tuple", "values"]):
        if part.event == "messages":
            chunk, metadata = part.data
            node = metadata["langgraph_node"]
            streamed[node] = streamed.get(node, "") + (chunk.get("content") or "")
        elif part.event == "values":
            final = part.data
    assert streamed["synthesize"].strip() == final["synthesis"]["answer"]
    assert final["synthesis"]["usage"]["output_tokens"] > 0  # usage survives streaming


async def test_assistants_carry_their_own_context(langgraph_server):
    client = get_client(url=langgraph_server)
    presets = {
        "symmetric": {"n": 2},
        "small-to-big": {"n": 3, "min_paths": 2, "synthesizer": {"max_tokens": 16}},
    }
    for name, context in presets.items():
        assistant = await client.assistants.create("a2r", context=context, name=name)
        result = await client.runs.wait(
            None, assistant["assistant_id"], input={"question": QUESTION}
        )
        assert len(result["paths"]) == context["n"], name
    assert result["usage"]["synthesize"]["output_tokens"] <= 16


async def test_remote_graph_returns_the_local_graphs_shape(langgraph_server, context_for):
    remote = RemoteGraph("a2r", url=langgraph_server, api_key=SERVER_KEY)
    remote_result = await remote.ainvoke({"question": QUESTION}, context={"n": 2})
    local_result = await graph.ainvoke({"question": QUESTION}, context=context_for(n=2))
    assert set(remote_result) == set(local_result)
    assert set(remote_result["paths"][0]) == set(local_result["paths"][0])
    assert len(remote_result["paths"]) == 2


async def test_tool_over_remote_graph(langgraph_server):
    tool = as_tool(RemoteGraph("a2r", url=langgraph_server, api_key=SERVER_KEY))
    message = await tool.ainvoke(
        {"type": "tool_call", "name": tool.name, "id": "1", "args": {"question": QUESTION, "n": 2}}
    )
    assert message.content.startswith("Final answer:")
    assert len(message.artifact["paths"]) == 2


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"input": {"question": "  "}}, "input.question: String should have at least 1 character"),
        ({"input": {}}, "input.question: required"),
        ({"input": {"qestion": "typo"}}, "input.qestion: Extra inputs are not permitted"),
        ({"input": {"question": 7}}, "input.question: Input should be a valid string"),
        (
            {"input": {"question": "q"}, "context": {"n": 0}},
            "context.n: Input should be greater than or equal to 1",
        ),
        (
            {"input": {"question": "q"}, "context": {"n": 2, "min_paths": 3}},
            "min_paths (3) must be <= n (2)",
        ),
        (
            {
                "input": {"question": "q"},
                "context": {"explorer": {"model": "m", "base_url": "nope"}},
            },
            "context.explorer.base_url: Input should be a valid URL",
        ),
        (
            {"input": {"question": "q"}, "context": {"n": 65}},
            "context.n: Input should be less than or equal to 64",
        ),
        (
            {"input": {"question": "q"}, "context": {"n": "four"}},
            "context.n: Input should be a valid integer",
        ),
        (
            {
                "input": {"question": "q"},
                "context": {"synthesizer": {"model": "m", "output_price_per_mtok": -1}},
            },
            "context.synthesizer.output_price_per_mtok: set by the server's deployment "
            "(A2R_SYNTHESIZER__OUTPUT_PRICE_PER_MTOK)",
        ),
        (
            {
                "input": {"question": "q"},
                "context": {"explorer": {"model": "m", "temperature": "hot"}},
            },
            "context.explorer.temperature: Input should be a valid number",
        ),
        (
            {"input": {"question": "q"}, "context": {"explorer": "gpu-host"}},
            "context.explorer: Input should be an object",
        ),
        (
            {"input": {"question": "q"}, "context": {"explorer": {"model": "m", "url": "x"}}},
            "context.explorer.url: unknown field; a run may set model, base_url",
        ),
        (
            {"input": {"question": "q"}, "context": {"overflow": "squeeze"}},
            "context.overflow: Input should be 'truncate', 'drop' or 'error'",
        ),
        ({"input": {"question": "q"}, "context": {"nn": 3}}, "context.nn: unknown field"),
        ({"input": None}, 'input: required: pass {"question": "..."} (input null resumes'),
        ({"input": {"question": "q"}, "context": [1, 2]}, "context: must be an object"),
        ({"input": {"question": "q"}, "context": "x"}, "context: must be an object"),
        (
            {"input": {"question": "q"}, "config": {"configurable": {"n": 0}}},
            "context.n: Input should be greater than or equal to 1",
        ),
        (
            {"input": {"question": "q"}, "context": {"prompts_dir": "/etc"}},
            "context.prompts_dir: set by the server's deployment (A2R_PROMPTS_DIR)",
        ),
        (
            {"input": {"question": "q"}, "context": {"explorer": {"api_key_env": "HOME"}}},
            "context.explorer.api_key_env: set by the server's deployment",
        ),
    ],
)
async def test_bad_input_is_rejected_with_422_naming_the_field(langgraph_server, run, message):
    import httpx

    async with httpx.AsyncClient(base_url=langgraph_server, headers=AUTH) as http:
        for path in ("/runs/wait", "/runs/stream", "/runs"):
            response = await http.post(path, json={"assistant_id": "a2r", **run})
            assert response.status_code == 422, (path, response.text)
            assert message in response.json()["detail"]
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        response = await http.post(
            f"/threads/{thread}/runs/wait", json={"assistant_id": "a2r", **run}
        )
        assert response.status_code == 422 and message in response.json()["detail"]
        runs = (await http.get(f"/threads/{thread}/runs")).json()
        assert runs == []  # nothing was started or written


async def test_unknown_model_fails_the_run_with_the_servers_message(langgraph_server):
    client = get_client(url=langgraph_server)
    thread = (await client.threads.create())["thread_id"]
    run = await client.runs.create(
        thread, "a2r", input={"question": "q"}, context={"explorer": {"model": "nope"}}
    )
    joined = await client.runs.join(thread, run["run_id"])
    assert (await client.runs.get(thread, run["run_id"]))["status"] == "error"
    assert joined["__error__"]["error"] == "ModelRequestError"
    assert "HTTP 404: The model `nope` does not exist." in joined["__error__"]["message"]


async def test_assistant_context_is_validated_with_the_run_context(langgraph_server):
    client = get_client(url=langgraph_server)
    assistant = await client.assistants.create("a2r", context={"n": 2, "min_paths": 2})
    import httpx

    async with httpx.AsyncClient(base_url=langgraph_server, headers=AUTH) as http:
        response = await http.post(
            "/runs/wait",
            json={
                "assistant_id": assistant["assistant_id"],
                "input": {"question": "q"},
                "context": {"n": 1},
            },
        )
    assert response.status_code == 422
    assert "min_paths (2) must be <= n (1)" in response.json()["detail"]
