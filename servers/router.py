"""vllm-router (the vLLM project's Rust router, a prebuilt PyPI wheel) in front of several
OpenAI-compatible replicas, in a cache venv of its own.

With ``--policy consistent_hash`` a request's ``X-Session-ID`` header picks its replica: the
graph sends its run's session id (``A2RContext.session_header``) on every call, so the N
explorers of one run share one replica's prefix cache while runs spread over the replicas.

    python -m servers.router serve URL1 URL2 [--port P] [--policy consistent_hash]
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path

from servers._common import (
    CacheVenv,
    ManagedServer,
    ServerError,
    cache_dir,
    cli_errors,
    run_with_server,
    serve_foreground,
)

ROUTER_VERSION = "0.1.17"
REQUIREMENTS_FILE = Path(__file__).with_name("requirements-router.txt")
_LOG_PREFIX = "[a2r-router]"


class RouterError(ServerError):
    """vllm-router could not be installed or did not start."""


class _RouterVenv(CacheVenv):
    dir_name = f"vllm-router-{ROUTER_VERSION}"
    lock_name = "router-venv"
    log_name = "router-install.log"
    title = ready_title = "vllm-router venv"
    note = "one time, ~20 s, ~60 MB"
    log_prefix = _LOG_PREFIX
    error_class = RouterError

    def digest(self) -> str:
        return hashlib.sha256(REQUIREMENTS_FILE.read_bytes()).hexdigest()

    def install(self) -> None:
        self.run(
            [*self.pip, "install", "--progress-bar", "off", "-r", str(REQUIREMENTS_FILE)],
            what="vllm-router install",
        )


class VllmRouter(ManagedServer):
    """vllm-router on a free loopback port routing ``/v1/*`` over ``workers`` (base URLs
    without ``/v1``); ``base_url`` is what a stage's ``base_url`` should be."""

    display_name = "vllm-router"
    log_prefix = _LOG_PREFIX
    error_class = RouterError
    tmp_prefix = "router-"
    log_glob = "router-*.log"

    def __init__(
        self, workers: Sequence[str], *, policy: str = "consistent_hash", port: int | None = None
    ) -> None:
        super().__init__(port, None, host="127.0.0.1", startup_timeout=60, env=None)
        self.workers, self.policy = [w.rstrip("/").removesuffix("/v1") for w in workers], policy

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._started_port()}/v1"

    def _prepare(self) -> Path:
        return _RouterVenv().ensure()

    def _server_command(self, python: Path) -> list[str]:
        return [
            str(python.with_name("vllm-router")),
            *("--host", self.host, "--port", str(self._started_port())),
            *("--policy", self.policy, "--worker-urls", *self.workers),
            *("--log-dir", str(self._tmp_dir), "--log-level", "warning"),
        ]

    def server_env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(cache_dir())}

    def _ready_url(self) -> str:
        return f"http://{self.host}:{self._started_port()}/health"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers.router", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="route over WORKERS until Ctrl-C")
    serve.add_argument("workers", nargs="+", help="replica URLs, e.g. http://127.0.0.1:8001")
    serve.add_argument("--port", type=int, help="listen port (default: a free one)")
    serve.add_argument("--policy", default="consistent_hash", help="vllm-router --policy")
    args = parser.parse_args(argv)
    server = VllmRouter(args.workers, policy=args.policy, port=args.port)
    body = lambda: serve_foreground(server, [f"export A2R_EXPLORER__BASE_URL={server.base_url}"])  # noqa: E731
    return cli_errors(
        lambda: run_with_server(server, body, serving=True, stopping="stopping vllm-router")
    )


if __name__ == "__main__":
    raise SystemExit(main())
