"""MCP clients of the package's MCP server: in memory (no HTTP), or over streamable HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import CallToolResult, Tool

from a2r_graph.serving.mcp_tool import build_server
from a2r_graph.serving.runners import Runner


async def call_tool(
    runner: Runner, name: str, arguments: dict[str, Any]
) -> tuple[Tool, CallToolResult]:
    """The tool ``name`` as the server over ``runner`` lists it, and its result for
    ``arguments``."""
    async with create_connected_server_and_client_session(build_server(runner)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        return tools[name], await client.call_tool(name, arguments)


@asynccontextmanager
async def mcp_session(url: str, headers: dict | None = None) -> AsyncIterator[ClientSession]:
    if headers is None:
        from tests.integration.conftest import SERVER_KEY  # the integration servers' key

        headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    timeout = httpx.Timeout(30, read=300)  # a call lasts as long as the A2R run
    async with (
        httpx.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session
