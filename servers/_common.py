"""Shared core of the local servers (``embedded.py``: vLLM CPU, ``phoenix.py``: Arize Phoenix).

Standard library only, like the modules that use it: the cache dir, inter-process file locks,
venvs built once under the cache dir, logged subprocess runs, and :class:`ManagedServer`, a
local server process in its own process group with a log file and a private temp dir, plus
the CLI pieces both ``python -m servers.X serve`` commands share.

What logs or fails takes the caller's log prefix (``[a2r-embedded]``, ``[a2r-phoenix]``) and
error class, as arguments or as class attributes of a subclass, so messages and exceptions
stay those of the calling module.
"""

from __future__ import annotations

import abc
import argparse
import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, ClassVar, Self, TypedDict

DEFAULT_HOST = "127.0.0.1"
LOG_TAIL_LINES = 40
MARKER = ".a2r-complete"
"""Written into a venv or model dir only once it is complete."""
KEEP_LOGS = 20
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""URL opener that never goes through a proxy (the servers are on loopback)."""


class ServerError(RuntimeError):
    """Base of the local servers' errors: a venv, a model or a server failed."""


def log(prefix: str, msg: str) -> None:
    """One progress line on stderr: ``{prefix} {msg}``."""
    print(f"{prefix} {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# cache dir, locks, subprocesses


def cache_dir() -> Path:
    """``$A2R_CACHE_DIR`` if set (and non-empty), else ``~/.cache/a2r-graph``."""
    env = os.environ.get("A2R_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "a2r-graph"


@contextlib.contextmanager
def file_lock(name: str, *, prefix: str) -> Iterator[None]:
    """Inter-process lock in the cache dir, so concurrent prepares do not trample each other."""
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(prefix, f"waiting for another process holding the {name!r} lock...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def clean_subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a cache venv's python: no leaking PYTHONPATH/PYTHONHOME, offline HF,
    no usage stats, ``TMPDIR`` in the cache dir; then ``extra``."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(key, None)
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }.items():
        env.setdefault(key, value)
    tmp = cache_dir() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp)
    if extra:
        env.update(extra)
    return env


def run_logged(
    cmd: Sequence[str],
    log_path: Path,
    *,
    prefix: str,
    error: type[ServerError],
    env: Mapping[str, str] | None = None,
    show: Sequence[str] = (),
    what: str = "command",
) -> None:
    """Run ``cmd``, append all output to ``log_path``, echo lines starting with ``show``.

    On failure raise ``error`` with the last lines of output.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    with open(log_path, "a", encoding="utf-8", errors="replace") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                stripped = line.rstrip()
                tail.append(stripped)
                if show and stripped.lstrip().startswith(tuple(show)):
                    log(prefix, "  " + stripped.strip()[:160])
            rc = proc.wait()
        except BaseException:  # Ctrl-C etc.: do not leave pip or the converter running
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        raise error(
            f"{what} failed (exit {rc}): {' '.join(cmd)}\n"
            f"--- last {len(tail)} lines (full log: {log_path}) ---\n" + "\n".join(tail)
        )


def log_tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    """The last ``n`` lines of ``path`` (or why it could not be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=n))
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


def prune_logs(log_dir: Path, pattern: str, keep: int = KEEP_LOGS) -> None:
    """Keep the ``keep`` newest auto-named server logs (ports are random, names pile up)."""
    logs = sorted(log_dir.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        old.unlink(missing_ok=True)


def free_port(host: str) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` still has a member."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------
# venvs under the cache dir


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


class CacheVenv(abc.ABC):
    """A venv under the cache dir, built once by ``ensure()``.

    A marker file holding ``digest()`` (what the venv is built from) is written only after the
    whole install succeeded, so an interrupted or outdated install is wiped and redone by the
    next ``ensure()``. Subclasses set the class attributes and implement ``digest`` and
    ``install`` (which runs its commands with ``run``, ``python`` and ``pip``).
    """

    dir_name: ClassVar[str]
    """Directory under the cache dir."""
    lock_name: ClassVar[str]
    """File lock held while checking and building."""
    log_name: ClassVar[str]
    """Install log in ``<cache>/logs`` (started afresh by each build)."""
    title: ClassVar[str]
    """``creating the {title} at ...``."""
    ready_title: ClassVar[str]
    """``{ready_title} ready in Ns``."""
    note: ClassVar[str]
    """How long and how large, in the ``creating`` line."""
    log_prefix: ClassVar[str]
    error_class: ClassVar[type[ServerError]]

    def __init__(self) -> None:
        self.path = cache_dir() / self.dir_name
        self.log_path = cache_dir() / "logs" / self.log_name
        self.env: dict[str, str] = {}
        """Environment of the install commands (set by the build)."""

    @property
    def python(self) -> Path:
        return venv_python(self.path)

    @property
    def pip(self) -> list[str]:
        return [str(self.python), "-m", "pip", "--no-input"]

    @abc.abstractmethod
    def digest(self) -> str:
        """Digest of what the venv is built from: a change triggers a rebuild."""

    @abc.abstractmethod
    def install(self) -> None:
        """Install into the freshly created venv."""

    def run(self, cmd: Sequence[str], *, what: str, show: Sequence[str] = ()) -> None:
        """``run_logged`` into the install log with the install environment."""
        run_logged(
            cmd,
            self.log_path,
            prefix=self.log_prefix,
            error=self.error_class,
            env=self.env,
            show=show,
            what=what,
        )

    def ready(self, digest: str) -> bool:
        marker = self.path / MARKER
        return self.python.exists() and marker.exists() and marker.read_text().strip() == digest

    def ensure(self) -> Path:
        """Build the venv unless it is ready; return its python executable."""
        digest = self.digest()
        if self.ready(digest):
            return self.python
        with file_lock(self.lock_name, prefix=self.log_prefix):
            if self.ready(digest):
                return self.python
            self._build(digest)
        return self.python

    def _build(self, digest: str) -> None:
        started = time.monotonic()
        if self.log_path.exists():
            self.log_path.unlink()
        if self.path.exists():
            log(self.log_prefix, f"removing incomplete or outdated venv {self.path}")
            shutil.rmtree(self.path)
        log(
            self.log_prefix,
            f"creating the {self.title} at {self.path} ({self.note}; log: {self.log_path})",
        )
        self.env = clean_subprocess_env()
        self.env.pop("VIRTUAL_ENV", None)
        self.env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        self.run([sys.executable, "-m", "venv", str(self.path)], what="venv creation")
        self.install()
        (self.path / MARKER).write_text(digest + "\n")
        log(self.log_prefix, f"{self.ready_title} ready in {time.monotonic() - started:.0f}s")


# --------------------------------------------------------------------------------------------
# a managed server process


class ManagedServer(abc.ABC):
    """A local server in a subprocess of its own process group; use as a context manager.

    ``start()`` prepares what the server needs, picks free ports, makes a private temp dir
    under ``<cache>/tmp``, starts the command with its output in a log file (by default an
    auto-named one in ``<cache>/logs``, the newest ``KEEP_LOGS`` kept) and waits until the
    readiness URL answers 200; ``stop()`` SIGTERMs the process group, SIGKILLs what is left
    after a grace period and deletes the temp dir. ``stop`` is also registered with atexit.

    Subclasses set the class attributes and implement the hooks below, and define
    ``stop(grace=THEIR_DEFAULT)`` as a call of ``_shutdown(grace)``.
    """

    display_name: ClassVar[str]
    """The server in messages: ``"vLLM"``, ``"Phoenix"``."""
    log_prefix: ClassVar[str]
    """Prefix of the progress lines on stderr."""
    error_class: ClassVar[type[ServerError]]
    """Raised when the server cannot start."""
    tmp_prefix: ClassVar[str]
    """Name prefix of the private temp dir under ``<cache>/tmp``."""
    log_glob: ClassVar[str]
    """Glob of the auto-named logs in ``<cache>/logs`` to prune."""
    poll_interval: ClassVar[float] = 0.5
    """Seconds between readiness checks."""
    linger_seconds: ClassVar[float] = 0.0
    """After SIGTERM and the leader's exit, how long the rest of the group may take to go
    before it is SIGKILLed."""

    def __init__(
        self,
        port: int | None,
        log_path: str | os.PathLike[str] | None,
        *,
        host: str,
        startup_timeout: float,
        env: Mapping[str, str] | None,
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
        """Install what the server needs (cached); return the python that runs it."""

    @abc.abstractmethod
    def _server_command(self, python: Path) -> list[str]:
        """The command line, once ports, temp dir and log path are set."""

    @abc.abstractmethod
    def server_env(self) -> dict[str, str]:
        """The server's environment."""

    @abc.abstractmethod
    def _ready_url(self) -> str:
        """URL that answers 200 once the server is ready."""

    def _default_log_name(self) -> str:
        """File name of the auto-named log in ``<cache>/logs`` (matches ``log_glob``)."""
        return f"{self.tmp_prefix}{self._started_port()}.log"

    def _starting_message(self) -> str:
        return f"starting {self.display_name} on {self.host}:{self._started_port()}"

    def _ready_message(self, seconds: float) -> str:
        return f"{self.display_name} ready in {seconds:.1f}s"

    def stop(self, grace: float = 10.0) -> None:
        """Stop the server: ``self._shutdown(grace)`` (subclasses set their own grace)."""
        self._shutdown(grace)

    def _choose_ports(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)

    def _setup_tmp_dir(self, tmp_dir: Path) -> None:  # noqa: B027 - optional hook
        """Prepare the fresh private temp dir (nothing by default)."""

    def _server_cwd(self) -> Path:
        return cache_dir()

    def _repr_fields(self) -> list[str]:
        return []

    # -- state ------------------------------------------------------------------------------
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
        body = log_tail(self.log_path) if self.log_path else ""
        return f"--- last {LOG_TAIL_LINES} lines of {self.log_path} ---\n{body}"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Self:
        if self.is_running():
            return self
        python = self._prepare()
        self._choose_ports()
        tmp_root = cache_dir() / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        self._tmp_dir = Path(tempfile.mkdtemp(prefix=self.tmp_prefix, dir=tmp_root))
        self._setup_tmp_dir(self._tmp_dir)
        if self._log_path_arg is None:
            self.log_path = cache_dir() / "logs" / self._default_log_name()
            prune_logs(self.log_path.parent, self.log_glob)
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
        assert self.process is not None and self.log_path is not None
        url = self._ready_url()
        deadline = started + self.startup_timeout
        while True:
            rc = self.process.poll()
            if rc is not None:
                raise self.error_class(
                    f"{self.display_name} exited with code {rc} during startup.\n"
                    + self._log_tail_block()
                )
            try:
                with NO_PROXY_OPENER.open(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise self.error_class(
                    f"{self.display_name} did not answer 200 on {url} "
                    f"within {self.startup_timeout:.0f}s.\n" + self._log_tail_block()
                )
            time.sleep(self.poll_interval)

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
        port = self.port if self.port is not None else "?"
        fields = [*self._repr_fields(), f"port={port}", state]
        return f"{type(self).__name__}({', '.join(fields)})"


# --------------------------------------------------------------------------------------------
# CLI pieces


def cache_dir_note() -> str:
    """End of the ``--help`` description of both CLIs."""
    return f"Cache: $A2R_CACHE_DIR or ~/.cache/a2r-graph (now {cache_dir()})."


def add_log_and_timeout_args(parser: argparse.ArgumentParser, default_timeout: float) -> None:
    """``--log`` and ``--timeout`` of a ``serve``-like subcommand."""
    parser.add_argument("--log", type=Path, default=None, help="server log file")
    parser.add_argument(
        "--timeout",
        type=float,
        default=default_timeout,
        help=f"startup timeout in seconds (default {default_timeout:.0f})",
    )


class ServerArgs(TypedDict):
    """``ManagedServer`` constructor arguments from the shared CLI flags."""

    port: int | None
    log_path: Path | None
    host: str
    startup_timeout: float


def server_args(args: argparse.Namespace) -> ServerArgs:
    """What ``--port``, ``--log``, ``--host`` and ``--timeout`` say, as constructor arguments."""
    return ServerArgs(
        port=args.port, log_path=args.log, host=args.host, startup_timeout=args.timeout
    )


def exit_code(rc: int) -> int:
    """A child's return code as a shell exit status (killed by signal N: 128 + N)."""
    return 128 - rc if rc < 0 else rc


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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


def _as_list(server: ManagedServer | Sequence[ManagedServer]) -> list[ManagedServer]:
    return [server] if isinstance(server, ManagedServer) else list(server)


def run_with_server(
    server: ManagedServer | Sequence[ManagedServer],
    body: Callable[[], int],
    *,
    serving: bool,
    stopping: str,
) -> int:
    """Start ``server`` (or several, in order), return ``body()``, always stop them.

    Ctrl-C, SIGTERM and SIGHUP stop it cleanly (SIGINT is set explicitly because a background
    job of a non-interactive shell starts with SIGINT ignored): logged as ``interrupted:
    {stopping}``, exit 0 if ``serving`` and the servers were still up, else 130.
    """
    servers = _as_list(server)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGHUP, _raise_keyboard_interrupt)
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


def serve_foreground(server: ManagedServer | Sequence[ManagedServer], lines: Iterable[str]) -> int:
    """Print ``lines`` and ``# Ctrl-C to stop``, wait until a started server exits (it
    should not: that is an error, with the log's tail)."""
    servers = _as_list(server)
    for line in lines:
        print(line)
    print("# Ctrl-C to stop", flush=True)
    while not (exited := [each for each in servers if not each.is_running()]):
        time.sleep(0.5)
    dead = exited[0]
    rc = dead.process.returncode if dead.process is not None else 1
    assert dead.log_path is not None
    print(
        f"error: {dead.display_name} exited with code {rc}.\n{log_tail(dead.log_path)}",
        file=sys.stderr,
    )
    return exit_code(rc) or 1
