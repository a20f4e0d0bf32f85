"""What every local server shares: :class:`ManagedServer`, a server process in its own process
group with a log file and a private temp dir, and the pieces of the ``serve``/``exec`` commands.
"""

from __future__ import annotations

import abc
import argparse
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Self

from servers.cache import LOG_TAIL_LINES, ServerError, cache_dir, clean_subprocess_env, log

DEFAULT_HOST = "127.0.0.1"
KEEP_LOGS = 20
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""URL opener that never goes through a proxy (the servers are on loopback)."""


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ManagedServer(abc.ABC):
    """A local server in a subprocess of its own process group; use as a context manager.

    ``start()`` prepares what the server needs, picks free ports, makes a private temp dir
    under ``<cache>/tmp``, starts the command with its output in a log file (by default
    ``<cache>/logs/<tmp_prefix>...log``, the newest ``KEEP_LOGS`` kept) and waits until the
    server is ready; ``stop()`` (also run at exit) SIGTERMs the process group, SIGKILLs what is
    left after ``stop_grace`` seconds and deletes the temp dir. Messages and errors carry the
    subclass's ``log_prefix`` and ``error_class``.
    """

    display_name: str
    log_prefix: str
    error_class: type[ServerError]
    tmp_prefix: str
    """Name prefix of the private temp dir and of the auto-named logs."""
    log_glob: str
    """Glob of the auto-named logs in ``<cache>/logs`` to prune."""
    ready_path = ""
    """Of the URL that answers 200 once the server is ready."""
    poll_interval = 0.5
    stop_grace = 10.0
    linger_seconds = 0.0
    """After SIGTERM and the leader's exit, how long the rest of the group may take to go."""

    def __init__(
        self,
        port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        *,
        host: str = DEFAULT_HOST,
        startup_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port: int | None = port
        self.startup_timeout = startup_timeout
        self.extra_env: dict[str, str] = dict(env or {})
        self._log_path_arg = Path(log_path) if log_path is not None else None
        self.log_path: Path | None = self._log_path_arg
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._tmp_dir: Path | None = None

    # -- hooks ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _prepare(self) -> Path:
        """Install what the server needs (cached); return the program that runs it."""

    @abc.abstractmethod
    def _server_command(self, python: Path) -> list[str]:
        """The command line, once ports, temp dir and log path are set."""

    def _ready_url(self) -> str:
        return self.url + self.ready_path

    def _is_ready(self) -> bool:
        with contextlib.suppress(OSError), NO_PROXY_OPENER.open(self._ready_url(), timeout=5) as r:
            return bool(r.status == 200)
        return False

    def server_env(self) -> dict[str, str]:
        env = clean_subprocess_env()
        if self._tmp_dir is not None:
            env["TMPDIR"] = str(self._tmp_dir)
        return env | self.extra_env

    def _default_log_name(self) -> str:
        return f"{self.tmp_prefix}{self._started_port()}.log"

    def _starting_message(self) -> str:
        return f"starting {self.display_name} on {self.host}:{self.port}; log: {self.log_path}"

    def _ready_message(self, seconds: float) -> str:
        return f"{self.display_name} ready in {seconds:.1f}s"

    def _choose_ports(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)

    def _setup_tmp_dir(self, tmp_dir: Path) -> None:  # noqa: B027 - optional hook
        """Prepare the fresh private temp dir (nothing by default)."""

    def _server_cwd(self) -> Path:
        return cache_dir()

    # -- state ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._started_port()}"

    def _started_port(self) -> int:
        if self.port is None:
            raise self.error_class("server not started: no port chosen yet")
        return self.port

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self, msg: str) -> None:
        log(self.log_prefix, msg)

    def _log_tail_block(self) -> str:
        """The last lines of the log, under a ``--- last N lines of LOG ---`` header."""
        try:
            with open(self.log_path or "", encoding="utf-8", errors="replace") as fh:
                body = "".join(deque(fh, maxlen=LOG_TAIL_LINES))
        except OSError as exc:
            body = f"<could not read {self.log_path}: {exc}>"
        return f"--- last {LOG_TAIL_LINES} lines of {self.log_path} ---\n{body}"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Self:
        if self.is_running():
            return self
        python = self._prepare()
        self._choose_ports()
        (cache_dir() / "tmp").mkdir(parents=True, exist_ok=True)
        self._tmp_dir = Path(tempfile.mkdtemp(prefix=self.tmp_prefix, dir=cache_dir() / "tmp"))
        self._setup_tmp_dir(self._tmp_dir)
        if self._log_path_arg is None:
            self.log_path = cache_dir() / "logs" / self._default_log_name()
            old = sorted(self.log_path.parent.glob(self.log_glob), key=os.path.getmtime)
            for path in old[:-KEEP_LOGS]:  # ports are random: auto-named logs pile up
                path.unlink(missing_ok=True)
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self._server_command(python)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log_file.flush()
        self.log(self._starting_message())
        started = time.monotonic()
        self.process = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.server_env(),
            cwd=str(self._server_cwd()),
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.log(self._ready_message(time.monotonic() - started))
        return self

    def _wait_ready(self, started: float) -> None:
        assert self.process is not None
        while (rc := self.process.poll()) is None:
            if self._is_ready():
                return
            if time.monotonic() > started + self.startup_timeout:
                raise self.error_class(
                    f"{self.display_name} was not ready ({self._ready_url()}) "
                    f"within {self.startup_timeout:.0f}s.\n" + self._log_tail_block()
                )
            time.sleep(self.poll_interval)
        raise self.error_class(
            f"{self.display_name} exited with code {rc} during startup.\n" + self._log_tail_block()
        )

    def stop(self, grace: float | None = None) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``grace`` (default ``stop_grace``)."""
        self._shutdown(self.stop_grace if grace is None else grace)

    def _shutdown(self, grace: float) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds (and what is left of
        it ``linger_seconds`` after the leader exited); close the log, delete the temp dir."""
        proc = self.process
        if proc is not None:
            pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
            # The leader may be gone while children (vLLM's engine core) linger: kill the rest.
            deadline = time.monotonic() + self.linger_seconds
            while time.monotonic() < deadline and group_alive(pgid):
                time.sleep(0.1)
            if group_alive(pgid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            self.process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"{type(self).__name__}(port={self.port}, {state})"


# --------------------------------------------------------------------------------------------
# CLI pieces


def cache_dir_note() -> str:
    """End of the ``--help`` description of the CLIs that build venvs."""
    return f"Cache: $A2R_CACHE_DIR or ~/.cache/a2r-graph (now {cache_dir()})."


def add_server_args(parser: argparse.ArgumentParser, timeout: float, port_help: str) -> None:
    """``--port``, ``--host``, ``--log`` and ``--timeout``, read back by ``server_args``."""
    parser.add_argument("--port", type=int, help=port_help)
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default %(default)s)")
    parser.add_argument("--log", type=Path, help="server log file")
    timeout_help = "startup timeout in seconds (default %(default).0f)"
    parser.add_argument("--timeout", type=float, default=timeout, help=timeout_help)


def server_args(args: argparse.Namespace) -> dict[str, Any]:
    return dict(port=args.port, log_path=args.log, host=args.host, startup_timeout=args.timeout)


def serve_parser(module: str, doc: str | None, help: str) -> tuple[argparse.ArgumentParser, Any]:
    """``python -m servers.X serve [--port P]``: the parser and its ``serve`` subcommand."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc)
    serve = parser.add_subparsers(dest="command", required=True).add_parser("serve", help=help)
    serve.add_argument("--port", type=int, help="listen port (default: a free one)")
    return parser, serve


def exit_code(rc: int) -> int:
    """A child's return code as a shell exit status (killed by signal N: 128 + N)."""
    return 128 - rc if rc < 0 else rc


def cli_errors(run: Callable[[], int]) -> int:
    """``run()``; a server error or ValueError prints ``error: ...`` (exit 1), an interrupt
    prints ``interrupted`` (exit 130)."""
    try:
        return run()
    except (ServerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run_with_server(
    servers: Sequence[ManagedServer], body: Callable[[], int], *, serving: bool, stopping: str
) -> int:
    """Start ``servers`` in order, return ``body()``, always stop them.

    Ctrl-C, SIGTERM and SIGHUP stop it cleanly (SIGINT is set explicitly because a background
    job of a non-interactive shell starts with SIGINT ignored): logged as ``interrupted:
    {stopping}``, exit 0 if ``serving`` and the servers were still up, else 130.
    """
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        for each in servers:
            each.start()
        return body()
    except KeyboardInterrupt:
        servers[0].log(f"interrupted: {stopping}")
        return 0 if serving and all(each.is_running() for each in servers) else 130
    finally:
        for each in reversed(servers):
            each.stop()


def serve(
    server: ManagedServer | Sequence[ManagedServer],
    lines: Callable[[], Iterable[str]],
    stopping: str | None = None,
) -> int:
    """The ``serve`` command: start, print ``lines()`` and ``# Ctrl-C to stop``, wait until
    Ctrl-C (or until a server exits: an error, with its log's tail), stop."""
    servers = [server] if isinstance(server, ManagedServer) else list(server)

    def foreground() -> int:
        print(*lines(), "# Ctrl-C to stop", sep="\n", flush=True)
        while not (exited := [each for each in servers if not each.is_running()]):
            time.sleep(0.5)
        rc = exited[0].process.returncode if exited[0].process is not None else 1
        print(f"error: {exited[0].display_name} exited with code {rc}.", file=sys.stderr)
        print(exited[0]._log_tail_block(), file=sys.stderr)
        return exit_code(rc) or 1

    stopping = stopping or f"stopping {servers[0].display_name}"
    return cli_errors(lambda: run_with_server(servers, foreground, serving=True, stopping=stopping))
