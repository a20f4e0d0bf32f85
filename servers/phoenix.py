"""Phoenix: a local Arize Phoenix OTLP trace dashboard for a2r-graph runs.

Standard library only: this module runs with any Python >= 3.11, before and outside the project
venv. It builds its own Phoenix venv under the cache dir (``$A2R_CACHE_DIR`` or
``~/.cache/a2r-graph``) and runs ``python -m phoenix.server.main serve`` in a subprocess with a
fresh SQLite working dir that is deleted on stop.

    python -m servers.phoenix prepare
    python -m servers.phoenix serve [--port P] [--grpc-port P] [--project NAME] [--service-name S]

From Python::

    with PhoenixServer() as phoenix:
        phoenix.url                      # "http://127.0.0.1:PORT" (UI + REST + OTLP/HTTP)
        phoenix.otlp_traces_endpoint     # "http://127.0.0.1:PORT/v1/traces"
        env = phoenix.otel_env("a2r-graph")   # OTEL_* variables for an OTLP HTTP/protobuf client
        ...                              # export spans
        # tests/phoenix_spans.py reads the spans back

Project mapping (Phoenix 20.x, ``phoenix/server/api/routers/v1/traces.py``): an OTLP export
lands in the project named by the ``x-project-name`` HTTP header, else by the
``openinference.project.name`` resource attribute, else in ``"default"``. ``service.name`` plays
no part. ``otel_env`` sets both the header and the resource attribute (project ``"default"``
unless told otherwise).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from servers import _common
from servers._common import DEFAULT_HOST, CacheVenv, ManagedServer

__all__ = [
    "DEFAULT_PROJECT",
    "PHOENIX_VERSION",
    "PhoenixServer",
    "PhoenixServerError",
    "ensure_phoenix",
    "main",
]

PHOENIX_VERSION = "20.26.1"
SERVERS_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = SERVERS_DIR / "requirements-phoenix.txt"

DEFAULT_PROJECT = "default"
"""Phoenix's own default project (spans with no project header/attribute land there)."""
DEFAULT_SERVICE_NAME = "a2r-graph"
DEFAULT_STARTUP_TIMEOUT = 120.0
STOP_GRACE_SECONDS = 10.0
"""Largest ``limit`` the spans REST route accepts."""
_VERSION_CHECK = f"assert v.__version__ == {PHOENIX_VERSION!r}, v.__version__"
_LOG_PREFIX = "[a2r-phoenix]"

#: Always set for the server; the caller's ``env=`` may override them.
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


class PhoenixServerError(_common.ServerError):
    """The Phoenix venv or server could not be prepared, started or queried."""


def _log(msg: str) -> None:
    _common.log(_LOG_PREFIX, msg)


# --------------------------------------------------------------------------------------------
# venv


class _PhoenixVenv(CacheVenv):
    dir_name = f"phoenix-{PHOENIX_VERSION}"
    lock_name = "phoenix-venv"
    log_name = "phoenix-install.log"
    title = ready_title = "Phoenix venv"
    note = "one time, ~1 min, ~0.9 GB"
    log_prefix = _LOG_PREFIX
    error_class = PhoenixServerError

    def digest(self) -> str:
        return hashlib.sha256(REQUIREMENTS_FILE.read_bytes()).hexdigest()

    def install(self) -> None:
        _log(f"installing {REQUIREMENTS_FILE.name} (arize-phoenix=={PHOENIX_VERSION}, pinned set)")
        self.run(
            [*self.pip, "install", "--progress-bar", "off", "-r", str(REQUIREMENTS_FILE)],
            what="Phoenix install",
        )
        _log("checking that Phoenix imports")
        check = f"import phoenix.server.main, phoenix.version as v; {_VERSION_CHECK}"
        self.run([str(self.python), "-c", check], what="Phoenix import check")


def ensure_phoenix() -> Path:
    """Create ``<cache>/phoenix-20.26.1/`` (once) and return its python executable.

    Idempotent: a marker file is written only after the whole install succeeded, so an
    interrupted install is wiped and redone on the next call. Editing
    ``requirements-phoenix.txt`` also triggers a reinstall.
    """
    return _PhoenixVenv().ensure()


# --------------------------------------------------------------------------------------------
# server


class PhoenixServer(ManagedServer):
    """A local Arize Phoenix server in a subprocess; use as a context manager.

    ``with PhoenixServer() as phoenix: ...`` installs the venv (cached), starts Phoenix on
    free 127.0.0.1 ports (HTTP: UI, REST, OTLP/HTTP at ``/v1/traces``; gRPC: OTLP/gRPC) with a
    fresh SQLite working dir, waits until ``GET /readyz`` answers 200, and on exit stops the
    process group and deletes the working dir (unless ``working_dir`` was given).
    """

    display_name = "Phoenix"
    log_prefix = _LOG_PREFIX
    error_class = PhoenixServerError
    tmp_prefix = "phoenix-"
    log_glob = "phoenix-[0-9]*.log"
    poll_interval = 0.25

    def __init__(
        self,
        port: int | None = None,
        grpc_port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        *,
        host: str = DEFAULT_HOST,
        working_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(port, log_path, host=host, startup_timeout=startup_timeout, env=env)
        self.grpc_port: int | None = grpc_port
        self._working_dir_arg = Path(working_dir) if working_dir is not None else None
        self.working_dir: Path | None = self._working_dir_arg

    # -- properties -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://HOST:PORT``: web UI, REST API (``/v1/...``) and OTLP/HTTP receiver."""
        return f"http://{self.host}:{self._started_port()}"

    @property
    def otlp_traces_endpoint(self) -> str:
        """``{url}/v1/traces``: OTLP/HTTP (protobuf or JSON) trace receiver."""
        return f"{self.url}/v1/traces"

    @property
    def otlp_grpc_endpoint(self) -> str:
        """``http://HOST:GRPC_PORT``: OTLP/gRPC receiver (Phoenix binds it on all interfaces)."""
        if self.grpc_port is None:
            raise PhoenixServerError("server not started: no gRPC port chosen yet")
        return f"http://{self.host}:{self.grpc_port}"

    def otel_env(
        self, service_name: str = DEFAULT_SERVICE_NAME, *, project: str = DEFAULT_PROJECT
    ) -> dict[str, str]:
        """Standard OTel SDK variables that make an OTLP HTTP/protobuf exporter send here.

        Spans land in Phoenix project ``project`` (read them back with ``spans(project)``):
        it goes both into the ``x-project-name`` export header (Phoenix's first choice, applied
        by every ``OTLPSpanExporter()`` built from the environment) and into the
        ``openinference.project.name`` resource attribute (its second choice, used when a
        resource is built with ``Resource.create()``). Values are percent-encoded as the SDK
        expects. ``OTEL_TRACES_EXPORTER=otlp`` and ``OTEL_{METRICS,LOGS}_EXPORTER=none`` are for
        ``opentelemetry-instrument`` style auto-configuration: Phoenix only receives traces.
        """
        q = urllib.parse.quote
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.otlp_traces_endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-project-name={q(project, safe='')}",
            "OTEL_SERVICE_NAME": service_name,
            "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={q(project, safe='')}",
        }

    # -- lifecycle --------------------------------------------------------------------------
    def command(self, python: Path) -> list[str]:
        # The `phoenix` console script is the same entry point; `-m` avoids its shebang.
        return [str(python), "-m", "phoenix.server.main", "serve"]

    def server_env(self) -> dict[str, str]:
        """The server's environment: inherited PHOENIX_*/OTEL_* are dropped (a stray
        PHOENIX_SQL_DATABASE_URL, PHOENIX_ENABLE_AUTH or PHOENIX_HOST_ROOT_PATH would change
        what this class talks to), then host, ports, working dir and offline switches."""
        env = _common.clean_subprocess_env()
        for key in list(env):
            if key.startswith(("PHOENIX_", "OTEL_")):
                del env[key]
        env.update(SERVER_ENV_DEFAULTS)
        env.update(
            {
                "PHOENIX_HOST": self.host,
                "PHOENIX_PORT": str(self.port),
                "PHOENIX_GRPC_PORT": str(self.grpc_port),
                "PHOENIX_WORKING_DIR": str(self.working_dir),
            }
        )
        if self._tmp_dir is not None:
            # Phoenix keeps pid files under $TMPDIR/.arize-phoenix/pids.
            env["TMPDIR"] = str(self._tmp_dir / "tmp")
        env.update(self.extra_env)
        return env

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds; delete the
        temporary working dir."""
        self._shutdown(grace)

    # -- ManagedServer hooks ----------------------------------------------------------------
    def _prepare(self) -> Path:
        return ensure_phoenix()

    def _choose_ports(self) -> None:
        super()._choose_ports()
        if self.grpc_port is None:
            self.grpc_port = _common.free_port(self.host)
            while self.grpc_port == self.port:
                self.grpc_port = _common.free_port(self.host)

    def _setup_tmp_dir(self, tmp_dir: Path) -> None:
        (tmp_dir / "tmp").mkdir()
        if self._working_dir_arg is None:
            self.working_dir = tmp_dir / "work"
        assert self.working_dir is not None
        self.working_dir.mkdir(parents=True, exist_ok=True)

    def _server_cwd(self) -> Path:
        assert self._tmp_dir is not None
        return self._tmp_dir

    def _server_command(self, python: Path) -> list[str]:
        return self.command(python)

    def _ready_url(self) -> str:
        return self.url + "/readyz"  # 200 once migrations ran, the app and gRPC started

    def _default_log_name(self) -> str:
        return f"phoenix-{self.port}.log"

    def _starting_message(self) -> str:
        return f"starting Phoenix on {self.url} (OTLP gRPC :{self.grpc_port}); log: {self.log_path}"

    def _ready_message(self, seconds: float) -> str:
        return f"Phoenix ready in {seconds:.1f}s: {self.url}"

    # -- reading spans back -----------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# CLI


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m servers.phoenix",
        description="Local Arize Phoenix trace dashboard (OTLP receiver) for a2r-graph. "
        + _common.cache_dir_note(),
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help=f"install the Phoenix {PHOENIX_VERSION} venv (once)")
    p = sub.add_parser("serve", help="run Phoenix in the foreground (Ctrl-C stops it)")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    p.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: a free one)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    p.add_argument(
        "--project",
        default=DEFAULT_PROJECT,
        help=f"Phoenix project for the printed OTEL_* lines (default {DEFAULT_PROJECT!r})",
    )
    p.add_argument(
        "--service-name",
        default=DEFAULT_SERVICE_NAME,
        help=f"OTEL_SERVICE_NAME in the printed lines (default {DEFAULT_SERVICE_NAME!r})",
    )
    p.add_argument(
        "--working-dir",
        type=Path,
        default=None,
        help="keep the SQLite data here (default: a temporary dir deleted on stop)",
    )
    _common.add_log_and_timeout_args(p, DEFAULT_STARTUP_TIMEOUT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return _common.cli_errors(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "prepare":
        print(ensure_phoenix())
        return 0
    server = PhoenixServer(
        grpc_port=args.grpc_port, working_dir=args.working_dir, **_common.server_args(args)
    )
    return _common.run_with_server(
        server,
        lambda: _common.serve_foreground(
            server, _serve_lines(server, args.service_name, args.project)
        ),
        serving=True,
        stopping="stopping Phoenix",
    )


def _serve_lines(server: PhoenixServer, service_name: str, project: str) -> list[str]:
    return [
        f"ui:        {server.url}",
        f"otlp/http: {server.otlp_traces_endpoint}",
        f"otlp/grpc: {server.otlp_grpc_endpoint}",
        f"data:      {server.working_dir}",
        f"log:       {server.log_path}",
        "# point an OpenTelemetry SDK (OTLP HTTP/protobuf exporter) at it:",
        *(
            f"export {key}={shlex.quote(value)}"
            for key, value in server.otel_env(service_name, project=project).items()
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
