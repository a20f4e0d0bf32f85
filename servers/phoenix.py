"""Phoenix: a local Arize Phoenix OTLP trace dashboard for a2r-graph runs, in a venv of its own,
with a fresh SQLite working dir deleted on stop. An OTLP export lands in the project named by the
``x-project-name`` header, else by the ``openinference.project.name`` resource attribute, else in
``"default"`` (``service.name`` plays no part); ``otel_env`` sets both.

    python -m servers.phoenix prepare
    python -m servers.phoenix serve [--port P] [--grpc-port P] [--project NAME] [--service-name S]
                                    [--prices]
"""

from __future__ import annotations

import argparse
import shlex
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servers import _common
from servers._common import ManagedServer
from servers.cache import ServerError, Venv

PHOENIX_VERSION = "20.26.1"
DEFAULT_PROJECT = "default"  # Phoenix's own
DEFAULT_SERVICE_NAME = "a2r-graph"
LOG_PREFIX = "[a2r-phoenix]"

SERVER_ENV_DEFAULTS: dict[str, str] = {
    # Offline: no telemetry pixels (FullStory, Scarf), no web fonts, no WASM sandbox download,
    # no docs MCP. PHOENIX_ALLOW_EXTERNAL_RESOURCES=false alone implies no telemetry.
    "PHOENIX_TELEMETRY_ENABLED": "false",
    "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    # The in-UI LLM assistant needs a provider key and can run server-side bash: off.
    "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
    "PHOENIX_AGENTS_DISABLE_BASH": "true",
    # Default true: echoes every migration SQL statement (~360 KB of log per start).
    "PHOENIX_LOG_MIGRATIONS": "false",
}


class PhoenixServerError(ServerError):
    """The Phoenix venv or server could not be prepared, started or queried."""


VENV = Venv(
    "phoenix", f"phoenix-{PHOENIX_VERSION}", "Phoenix venv", "one time, ~1 min, ~0.9 GB",
    LOG_PREFIX, PhoenixServerError,
    check="import phoenix.server.main, phoenix.version as v; "
    f"assert v.__version__ == {PHOENIX_VERSION!r}, v.__version__",
)  # fmt: skip


class PhoenixServer(ManagedServer):
    """Phoenix on free 127.0.0.1 ports (HTTP: UI, REST, OTLP/HTTP; gRPC: OTLP/gRPC), its SQLite
    data in the private temp dir unless ``working_dir`` is given; a context manager."""

    name = "phoenix"
    display_name = "Phoenix"
    log_prefix = LOG_PREFIX
    error_class = PhoenixServerError
    ready_path = "/readyz"  # 200 once migrations ran, the app and gRPC started
    startup_timeout = 120.0
    poll_interval = 0.25

    def __init__(
        self, *, grpc_port: int | None = None, working_dir: Path | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.grpc_port = grpc_port
        self._working_dir_arg = working_dir
        self.working_dir = working_dir

    @property
    def otlp_traces_endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    @property
    def otlp_grpc_endpoint(self) -> str:
        """Phoenix binds it on all interfaces, whatever ``host`` says."""
        return f"http://{self.host}:{self.grpc_port}"

    def otel_env(
        self, service_name: str = DEFAULT_SERVICE_NAME, *, project: str = DEFAULT_PROJECT
    ) -> dict[str, str]:
        """The OTel SDK variables that make an OTLP HTTP/protobuf exporter send spans here, into
        ``project``: in the export header (read by every ``OTLPSpanExporter()``) and in the
        resource attribute (read by ``Resource.create()``), percent-encoded as the SDK expects."""
        project = urllib.parse.quote(project, safe="")
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.otlp_traces_endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-project-name={project}",
            "OTEL_SERVICE_NAME": service_name,
            "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        }

    def server_env(self) -> dict[str, str]:
        # Inherited PHOENIX_*/OTEL_* go: a stray PHOENIX_SQL_DATABASE_URL, PHOENIX_ENABLE_AUTH or
        # PHOENIX_HOST_ROOT_PATH would change what this class talks to.
        inherited = super().server_env().items()
        env = {key: value for key, value in inherited if not key.startswith(("PHOENIX_", "OTEL_"))}
        assert self._tmp_dir is not None
        ours = {
            "PHOENIX_HOST": self.host,
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_WORKING_DIR": str(self.working_dir),
            "TMPDIR": str(self._tmp_dir / "tmp"),  # Phoenix keeps pid files there
        }
        return env | SERVER_ENV_DEFAULTS | ours | self.extra_env

    def _prepare(self) -> Path:
        return VENV.ensure()

    def _command(self, program: Path, tmp_dir: Path) -> list[str]:
        while self.grpc_port is None or self.grpc_port == self.port:
            self.grpc_port = _common.free_port(self.host)
        (tmp_dir / "tmp").mkdir()
        self.working_dir = self._working_dir_arg or tmp_dir / "work"
        self.working_dir.mkdir(parents=True, exist_ok=True)
        # The `phoenix` console script is the same entry point; `-m` avoids its shebang.
        return [str(program), "-m", "phoenix.server.main", "serve"]


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = _common.command_line(
        "phoenix",
        __doc__,
        PhoenixServer.startup_timeout,
        prepare=f"install the Phoenix {PHOENIX_VERSION} venv (once)",
        serve="run Phoenix in the foreground (Ctrl-C stops it)",
    )
    serve = commands["serve"]
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default: a free one)")
    project_help = "Phoenix project for the printed OTEL_* lines (default %(default)r)"
    serve.add_argument("--project", default=DEFAULT_PROJECT, help=project_help)
    service_help = "OTEL_SERVICE_NAME in the printed lines (default %(default)r)"
    serve.add_argument("--service-name", default=DEFAULT_SERVICE_NAME, help=service_help)
    data_help = "keep the SQLite data here (default: a temporary dir deleted on stop)"
    serve.add_argument("--working-dir", type=Path, help=data_help)
    prices_help = "register the A2R_* deployment's model prices with it (its costs, not $0)"
    serve.add_argument("--prices", action="store_true", help=prices_help)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return _common.cli_errors(lambda: print(VENV.ensure()) or 0)
    server = PhoenixServer(
        grpc_port=args.grpc_port, working_dir=args.working_dir, **_common.server_args(args)
    )
    return _common.serve(server, lambda: _serve_lines(server, args))


def _serve_lines(server: PhoenixServer, args: argparse.Namespace) -> list[str]:
    """What ``serve`` prints; with ``--prices``, first the A2R deployment's model prices
    (``A2R_*``), registered with ``server`` so that its costs are the runs'
    (``a2r_graph.serving.phoenix``)."""
    prices: dict[str, Any] = {}
    if args.prices:
        from a2r_graph.context import A2RContext
        from a2r_graph.serving.phoenix import PhoenixPricesError, deployment_prices, register_prices

        prices = deployment_prices(A2RContext())
        try:
            register_prices(server.url, prices)
        except PhoenixPricesError as error:
            raise PhoenixServerError(str(error)) from error
    otel = server.otel_env(args.service_name, project=args.project)
    return [
        *(f"price:     {m}: {p.input:g} in, {p.output:g} out per 1M" for m, p in prices.items()),
        f"ui:        {server.url}",
        f"otlp/http: {server.otlp_traces_endpoint}",
        f"otlp/grpc: {server.otlp_grpc_endpoint}",
        f"data:      {server.working_dir}",
        f"log:       {server.log_path}",
        "# point an OpenTelemetry SDK (OTLP HTTP/protobuf exporter) at it:",
        *(f"export {key}={shlex.quote(value)}" for key, value in otel.items()),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
