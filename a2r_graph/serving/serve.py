"""``a2r serve``: A2R as an OpenAI-compatible API (``/v1``) and an MCP tool (``/mcp``) for
users who run no LangGraph Server.

The graph runs in this process with the deployment's ``A2R_*`` environment; a request
chooses only run options (``RunOptions``), exactly as on LangGraph Server. Every request
needs ``A2R_SERVER_API_KEY`` (``Authorization: Bearer`` or ``x-api-key``) unless
``A2R_SERVER_AUTH=none``, and passes the checks of ``a2r_graph.serving.guard`` (hosts, origins, body
size and type) first; the server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """``a2r serve``'s arguments."""
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    serve.add_argument("--no-mcp", action="store_true", help="serve only the OpenAI-compatible API")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (default info)",
    )


def build_app(runner: Any = None, *, mcp: bool = True) -> Any:
    """The ``a2r serve`` app over ``runner`` (default: the graph in this process)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from a2r_graph.serving import openai_api
    from a2r_graph.serving.guard import Guard
    from a2r_graph.serving.runners import LocalRunner

    runner = runner if runner is not None else LocalRunner()

    async def ok(request: Any) -> Any:
        return JSONResponse({"ok": True})

    routes = [Route("/ok", ok, methods=["GET"]), *openai_api.routes(runner)]
    lifespan = None
    if mcp:
        from a2r_graph.serving.mcp_tool import MCPEndpoint

        endpoint = MCPEndpoint(runner)
        routes.append(endpoint.route())
        lifespan = endpoint.lifespan
    return Starlette(
        routes=routes, middleware=[Middleware(Guard, openai_paths=("/",))], lifespan=lifespan
    )


def startup_problem(host: str) -> str | None:
    """Why this server must not start as configured, or None."""
    from a2r_graph.errors import ConfigurationError
    from a2r_graph.serving.run_options import ServerSettings, run_context

    try:
        settings = ServerSettings()
    except ValueError as error:
        return f"a2r serve: invalid A2R_SERVER_* setting: {error}"
    if settings.auth != "none" and not (settings.api_key and settings.api_key.get_secret_value()):
        return (
            "a2r serve: set A2R_SERVER_API_KEY, the key clients must send (Authorization: "
            "Bearer KEY or x-api-key: KEY), e.g.\n  export A2R_SERVER_API_KEY=$(python3 -c "
            "'import secrets; print(secrets.token_urlsafe(32))')\nor A2R_SERVER_AUTH=none "
            "for a server that only you can reach"
        )
    try:
        run_context({})  # the deployment's A2R_* must make a run possible
    except ConfigurationError as error:
        return (
            f"a2r serve: the A2R_* configuration cannot run A2R:\n{error}\n(each stage needs "
            "A2R_EXPLORER__BASE_URL / A2R_EXPLORER__MODEL and A2R_SYNTHESIZER__BASE_URL / "
            "A2R_SYNTHESIZER__MODEL; see README, Configuration)"
        )
    if settings.auth == "none" and not _is_loopback(host):
        print(
            f"a2r serve: warning: A2R_SERVER_AUTH=none on {host}: anyone who reaches this "
            "port runs your models",
            file=sys.stderr,
        )
    return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(args: argparse.Namespace) -> int:
    """serve A2R as an OpenAI-compatible API (/v1) and an MCP tool (/mcp)

    Serve A2R over HTTP: POST /v1/chat/completions and GET /v1/models (OpenAI-compatible:
    model 'a2r' or 'a2r:n=8,...'), and the MCP tool 'a2r' at /mcp (streamable HTTP). The
    endpoints come from the A2R_* environment; clients send A2R_SERVER_API_KEY (Authorization:
    Bearer or x-api-key). A2R_SERVER_AUTH=none serves without a key, for a server only you can
    reach.
    """
    try:
        import uvicorn
    except ImportError:
        print("a2r serve needs the server extra: pip install 'a2r-graph[server]'", file=sys.stderr)
        return 2
    if problem := startup_problem(args.host):
        print(problem, file=sys.stderr)
        return 2
    app = build_app(mcp=not args.no_mcp)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"a2r serve: OpenAI-compatible API at http://{shown}:{args.port}/v1 (model 'a2r')"
        + ("" if args.no_mcp else f", MCP at http://{shown}:{args.port}/mcp"),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
