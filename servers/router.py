"""vllm-router (the vLLM project's Rust router, a prebuilt PyPI wheel) in front of several
OpenAI-compatible replicas, in a cache venv of its own.

With ``--policy consistent_hash`` a request's ``X-Session-ID`` header picks its replica: the
graph sends its run's session id (``A2RContext.session_header``) on every call, so the N
explorers of one run share one replica's prefix cache while runs spread over the replicas.

    python -m servers.router serve URL1 URL2 [--port P] [--policy consistent_hash]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servers._common import ManagedServer, command_line, serve, server_args
from servers.cache import ServerError, Venv, cache_dir

ROUTER_VERSION = "0.1.17"
LOG_PREFIX = "[a2r-router]"


class RouterError(ServerError):
    """vllm-router could not be installed or did not start."""


VENV = Venv(
    "router", f"vllm-router-{ROUTER_VERSION}", "vllm-router venv", "one time, ~20 s, ~60 MB",
    LOG_PREFIX, RouterError,
)  # fmt: skip


class VllmRouter(ManagedServer):
    """vllm-router on a free loopback port routing ``/v1/*`` over ``workers`` (base URLs
    without ``/v1``); ``base_url`` is what a stage's ``base_url`` should be."""

    name = "router"
    display_name = "vllm-router"
    log_prefix = LOG_PREFIX
    error_class = RouterError
    ready_path = "/health"

    def __init__(
        self, workers: Sequence[str], *, policy: str = "consistent_hash", **options: Any
    ) -> None:
        super().__init__(**options)
        self.workers, self.policy = [w.rstrip("/").removesuffix("/v1") for w in workers], policy

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _prepare(self) -> Path:
        return VENV.ensure().with_name("vllm-router")

    def _command(self, program: Path, tmp_dir: Path) -> list[str]:
        return [
            str(program),
            *("--host", self.host, "--port", str(self._started_port())),
            *("--policy", self.policy, "--worker-urls", *self.workers),
            *("--log-dir", str(tmp_dir), "--log-level", "warning"),
        ]

    def server_env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(cache_dir())} | self.extra_env


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = command_line("router", __doc__, serve="route over WORKERS until Ctrl-C")
    serve_args = commands["serve"]
    serve_args.add_argument("workers", nargs="+", help="replica URLs, e.g. http://127.0.0.1:8001")
    serve_args.add_argument("--policy", default="consistent_hash", help="vllm-router --policy")
    args = parser.parse_args(argv)
    server = VllmRouter(args.workers, policy=args.policy, **server_args(args))
    return serve(server, lambda: [f"export A2R_EXPLORER__BASE_URL={server.base_url}"])


if __name__ == "__main__":
    raise SystemExit(main())
