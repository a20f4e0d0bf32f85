"""What the local servers build once under the cache dir, and how: venvs and models.

Standard library only, like every module here: they run with any Python >= 3.11, before and
outside the project venv.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG_TAIL_LINES = 40
MARKER = ".a2r-complete"
INSTALL_SHOWN = ("Installing", "Successfully", "ERROR")  # pip's lines echoed on stderr
DEFAULT_ON = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
DEFAULT_ON += ("VLLM_NO_USAGE_STATS", "DO_NOT_TRACK", "PIP_DISABLE_PIP_VERSION_CHECK")


class ServerError(RuntimeError):
    """Base of the local servers' errors: a venv, a model or a server failed."""


def log(prefix: str, msg: str) -> None:
    print(f"{prefix} {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """``$A2R_CACHE_DIR`` if set (and non-empty), else ``~/.cache/a2r-graph``."""
    env = os.environ.get("A2R_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "a2r-graph"


def log_tail(path: Path | None) -> str:
    """The last lines of the log ``path``, under a ``--- last N lines of PATH ---`` header."""
    try:
        with open(path or "", encoding="utf-8", errors="replace") as fh:
            body = "".join(deque(fh, maxlen=LOG_TAIL_LINES))
    except OSError as exc:
        body = f"<could not read {path}: {exc}>"
    return f"--- last {LOG_TAIL_LINES} lines of {path} ---\n{body}"


def build_once(
    marker: Path,
    digest: str,
    build: Callable[[], None],
    lock: str,
    prefix: str,
    needs: Path | None = None,
) -> None:
    """``build()`` unless ``marker`` holds ``digest`` (and ``needs`` exists): the marker is
    deleted before and written after it (an interrupted or outdated build is redone), under
    the lock ``<cache>/locks/<lock>.lock``."""

    def ready() -> bool:
        built = (needs or marker).exists() and marker.is_file()
        return built and marker.read_text().strip() == digest

    if ready():
        return
    (cache_dir() / "locks").mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "locks" / f"{lock}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(prefix, f"waiting for another process holding the {lock!r} lock...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        if not ready():
            marker.unlink(missing_ok=True)
            build()
            marker.write_text(digest + "\n")


def clean_subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a cache venv's python: no leaking PYTHONPATH/PYTHONHOME, offline HF,
    no usage stats or pip version check, ``TMPDIR`` in the cache dir; then ``extra``."""
    env = dict.fromkeys(DEFAULT_ON, "1") | dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(key, None)
    (cache_dir() / "tmp").mkdir(parents=True, exist_ok=True)
    return env | {"TMPDIR": str(cache_dir() / "tmp")} | dict(extra or {})


def run_logged(
    cmd: Sequence[str | Path],
    log_path: Path,
    *,
    prefix: str,
    error: type[ServerError],
    what: str,
    show: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``cmd`` with ``clean_subprocess_env(env)``, append all output to ``log_path``, echo
    lines starting with ``show``; on failure raise ``error`` with the log's last lines."""
    cmd = [str(part) for part in cmd]
    env = {k: v for k, v in clean_subprocess_env(env).items() if k != "VIRTUAL_ENV"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", errors="replace") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        pipe, stdout, stdin = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL
        proc = subprocess.Popen(
            cmd, stdout=pipe, stderr=stdout, stdin=stdin, env=env, text=True, errors="replace"
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                if show and line.strip().startswith(tuple(show)):
                    log(prefix, "  " + line.strip()[:160])
            rc = proc.wait()
        except BaseException:  # Ctrl-C etc.: do not leave pip or the converter running
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        raise error(f"{what} failed (exit {rc}): {' '.join(cmd)}\n" + log_tail(log_path))


@dataclass(frozen=True)
class Venv:
    """A venv under the cache dir, built once from a requirements file by ``ensure()``."""

    key: str
    """Names its requirements (``servers/requirements-<key>.txt``), its lock (``<key>-venv``)
    and its install log (``logs/<key>-install.log``)."""
    dir_name: str
    title: str
    note: str
    """How long and how large, for the ``creating`` line."""
    prefix: str
    error: type[ServerError]
    check: str = ""
    """Python code run once everything is installed (an import check)."""
    first: tuple[str, ...] = ()
    """Installed first, from ``first_index`` if the configured indexes lack them."""
    first_index: str = ""
    remove: tuple[str, ...] = ()

    @property
    def requirements(self) -> Path:
        return Path(__file__).with_name(f"requirements-{self.key}.txt")

    @property
    def path(self) -> Path:
        return cache_dir() / self.dir_name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def digest(self) -> str:
        extra = " ".join(self.first) + " ".join(self.remove)
        return hashlib.sha256(self.requirements.read_bytes() + extra.encode()).hexdigest()

    def ensure(self) -> Path:
        """Build the venv unless it is ready; return its python executable."""
        marker, lock = self.path / MARKER, f"{self.key}-venv"
        build_once(marker, self.digest(), self._build, lock, self.prefix, self.python)
        return self.python

    def _build(self) -> None:
        started, log_path = time.monotonic(), cache_dir() / "logs" / f"{self.key}-install.log"
        log_path.unlink(missing_ok=True)
        if self.path.exists():
            log(self.prefix, f"removing incomplete or outdated venv {self.path}")
            shutil.rmtree(self.path)
        log(self.prefix, f"creating the {self.title} at {self.path} ({self.note}; log: {log_path})")

        def run(what: str, *cmd: str | Path, show: Sequence[str] = INSTALL_SHOWN) -> None:
            run_logged(cmd, log_path, prefix=self.prefix, error=self.error, what=what, show=show)

        run("venv creation", sys.executable, "-m", "venv", self.path, show=())
        pip = [self.python, "-m", "pip", "--no-input"]
        install = [*pip, "install", "--progress-bar", "off"]
        if self.first:
            try:
                run("install", *install, *self.first)
            except self.error:
                missing = f"{' '.join(self.first)} not found on the configured indexes"
                log(self.prefix, f"{missing}; retrying with {self.first_index}")
                run("install", *install, "--extra-index-url", self.first_index, *self.first)
        log(self.prefix, f"installing {self.requirements.name}")
        run(f"{self.title} install", *install, "-r", self.requirements)
        if self.remove:
            log(self.prefix, f"uninstalling {', '.join(self.remove)}")
            run("uninstall", *pip, "uninstall", "-y", *self.remove)
        if self.check:
            run("import check", self.python, "-c", self.check, show=())
        log(self.prefix, f"{self.title} ready in {time.monotonic() - started:.0f}s")
