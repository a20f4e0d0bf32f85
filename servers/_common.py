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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Self

from servers.cache import ServerError, cache_dir, clean_subprocess_env, log, log_tail

DEFAULT_HOST = "127.0.0.1"
KEEP_LOGS = 20
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ManagedServer(abc.ABC):
    """A local server in a subprocess of its own process group, with a private temp dir
    ``<cache>/tmp/NAME-...`` (its cwd and TMPDIR) and a log (by default
    ``<cache>/logs/NAME-PORT.log``, the newest ``KEEP_LOGS`` kept); a context manager."""

    name: str
    display_name: str
    log_prefix: str
    error_class: type[ServerError]
    ready_path = ""
    startup_timeout = 60.0
    poll_interval = 0.5
    stop_grace = 10.0
    linger_seconds = 0.0

    def __init__(
        self,
        port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        *,
        host: str = DEFAULT_HOST,
        startup_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.startup_timeout = startup_timeout or self.startup_timeout
        self.extra_env: dict[str, str] = dict(env or {})
        self._log_path_arg = Path(log_path) if log_path is not None else None
        self.log_path: Path | None = self._log_path_arg
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._tmp_dir: Path | None = None

    @abc.abstractmethod
    def _prepare(self) -> Path:
        """Install what the server needs (cached); return the program that runs it."""

    @abc.abstractmethod
    def _command(self, program: Path, tmp_dir: Path) -> list[str]:
        """Set up the server in its fresh ``tmp_dir``; return its command (the port is set)."""

    def _is_ready(self) -> bool:
        ready_url = self.url + self.ready_path
        with contextlib.suppress(OSError), NO_PROXY_OPENER.open(ready_url, timeout=5) as r:
            return bool(r.status == 200)
        return False

    def server_env(self) -> dict[str, str]:
        """This process's environment, cleaned, with TMPDIR the private temp dir; then ``env``."""
        return clean_subprocess_env({"TMPDIR": str(self._tmp_dir)}) | self.extra_env

    def _log_name(self) -> str:
        return f"{self.name}-{self.port}.log"

    def _starting_message(self) -> str:
        return f"starting {self.display_name} on {self.host}:{self.port}; log: {self.log_path}"

    def _server_cwd(self) -> Path:
        assert self._tmp_dir is not None
        return self._tmp_dir

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

    def _failed(self, what: str) -> ServerError:
        return self.error_class(f"{self.display_name} {what}.\n" + log_tail(self.log_path))

    def start(self) -> Self:
        """Prepare, start on a free port unless ``port``, wait until ``ready_path`` answers 200."""
        if self.is_running():
            return self
        program = self._prepare()
        self.port = free_port(self.host) if self.port is None else self.port
        (cache_dir() / "tmp").mkdir(parents=True, exist_ok=True)
        self._tmp_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=cache_dir() / "tmp"))
        if self._log_path_arg is None:
            self.log_path = cache_dir() / "logs" / self._log_name()
            # Ports are random: auto-named logs pile up (a digit before .log: not NAME-install.log)
            old = sorted(self.log_path.parent.glob(f"{self.name}-*[0-9].log"), key=os.path.getmtime)
            for path in old[:-KEEP_LOGS]:
                path.unlink(missing_ok=True)
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self._command(program, self._tmp_dir)
        self._log_file = open(self.log_path, "wb", buffering=0)  # noqa: SIM115 - closed in stop()
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
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
            while (rc := self.process.poll()) is None and not self._is_ready():
                if time.monotonic() > started + self.startup_timeout:
                    wait = f"({self.url}{self.ready_path}) within {self.startup_timeout:.0f}s"
                    raise self._failed(f"was not ready {wait}")
                time.sleep(self.poll_interval)
            if rc is not None:
                raise self._failed(f"exited with code {rc} during startup")
        except BaseException:
            self.stop()
            raise
        self.log(f"{self.display_name} ready in {time.monotonic() - started:.1f}s")
        return self

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace`` (``stop_grace``)
        seconds or ``linger_seconds`` after the leader's exit; delete the temp dir."""
        if (proc := self.process) is not None:
            pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_grace if grace is None else grace)
            # The leader may be gone while children (vLLM's engine core) linger: kill the rest.
            deadline = time.monotonic() + self.linger_seconds
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
                while time.monotonic() < deadline:
                    os.killpg(pgid, 0)
                    time.sleep(0.1)
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            self.process = None
        if self._log_file is not None:
            self._log_file.close()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
        self._log_file = self._tmp_dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def command_line(
    module: str, doc: str | None, timeout: float = 60.0, **commands: str
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """``python -m servers.MODULE``'s parser (``doc``, where the cache is) and subcommands
    (name: help); ``serve`` and ``exec`` take the options ``server_args`` reads back."""
    note = f"Cache: $A2R_CACHE_DIR or ~/.cache/a2r-graph (now {cache_dir()})."
    raw = argparse.RawDescriptionHelpFormatter  # keeps the docstring's command lines
    parser = argparse.ArgumentParser(
        prog=f"python -m servers.{module}", description=f"{doc}\n{note}", formatter_class=raw
    )
    sub = parser.add_subparsers(dest="command", required=True)
    parsers = {name: sub.add_parser(name, help=help) for name, help in commands.items()}
    for each in (parsers[name] for name in ("serve", "exec") if name in parsers):
        each.add_argument("--port", type=int, help="listen port (default: a free one)")
        each.add_argument("--host", default=DEFAULT_HOST, help="bind address (default %(default)s)")
        each.add_argument("--log", type=Path, help="server log file")
        timeout_help = "startup timeout in seconds (default %(default).0f)"
        each.add_argument("--timeout", type=float, default=timeout, help=timeout_help)
    return parser, parsers


def server_args(args: argparse.Namespace) -> dict[str, Any]:
    return dict(port=args.port, log_path=args.log, host=args.host, startup_timeout=args.timeout)


def exit_code(rc: int) -> int:
    """A child's return code as a shell exit status (killed by signal N: 128 + N)."""
    return 128 - rc if rc < 0 else rc


def cli_errors(run: Callable[[], int]) -> int:
    """``run()``; ``error: ...`` (exit 1) on a server error or ValueError, 130 on Ctrl-C."""
    try:
        return run()
    except (ServerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run_with_server(
    servers: Sequence[ManagedServer], body: Callable[[], int], *, serving: bool = False
) -> int:
    """Start ``servers`` in order, return ``body()``, always stop them. Ctrl-C, SIGTERM and
    SIGHUP stop them: exit 0 if ``serving`` and they were still up, else 130."""
    # SIGINT too: a background job of a non-interactive shell starts with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        for each in servers:
            each.start()
        return body()
    except KeyboardInterrupt:
        names = servers[0].display_name if len(servers) == 1 else "the servers"
        servers[0].log(f"interrupted: stopping {names}")
        return 0 if serving and all(each.is_running() for each in servers) else 130
    finally:
        for each in reversed(servers):
            each.stop()


def serve(
    server: ManagedServer | Sequence[ManagedServer], lines: Callable[[], Iterable[str]]
) -> int:
    """The ``serve`` command: start, print ``lines()`` and ``# Ctrl-C to stop``, wait until
    Ctrl-C (or until a server exits: an error, with its log's tail), stop."""
    servers = [server] if isinstance(server, ManagedServer) else list(server)

    def foreground() -> int:
        print(*lines(), "# Ctrl-C to stop", sep="\n", flush=True)
        while not (exited := [each for each in servers if not each.is_running()]):
            time.sleep(0.5)
        rc = exited[0].process.returncode if exited[0].process is not None else 1
        print(f"error: {exited[0]._failed(f'exited with code {rc}')}", file=sys.stderr)
        return exit_code(rc) or 1

    return cli_errors(lambda: run_with_server(servers, foreground, serving=True))
