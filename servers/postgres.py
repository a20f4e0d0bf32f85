"""A throwaway PostgreSQL server (Debian's ``postgresql`` package) on a loopback port, its data
in a private temp dir: for the durable-state tests and for trying A2R on Postgres locally.

    python -m servers.postgres serve [--port P]      # prints the DSN; Ctrl-C stops and deletes it

Run as root, it runs the server as the ``postgres`` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from servers._common import (
    ManagedServer,
    ServerError,
    cli_errors,
    run_with_server,
    serve_foreground,
)

INSTALL_HINT = "apt-get install postgresql (Debian), or put PostgreSQL's bin/ on PATH"


class PostgresError(ServerError):
    """PostgreSQL is missing or did not start."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    raise PostgresError(f"PostgreSQL is not installed: {INSTALL_HINT}")


class PostgresServer(ManagedServer):
    """``postgres`` on 127.0.0.1, database ``postgres``; ``dsn`` reaches it. Trust auth, or
    with ``password``: scram-sha-256 password auth for user ``postgres``, the password in
    ``dsn``."""

    display_name = "PostgreSQL"
    log_prefix = "[a2r-postgres]"
    error_class = PostgresError
    tmp_prefix = "postgres-"
    log_glob = "postgres-*.log"

    def __init__(self, port: int | None = None, password: str | None = None) -> None:
        super().__init__(port, None, host="127.0.0.1", startup_timeout=60, env=None)
        self.password = password
        self._bin: Path | None = None
        self._data: Path | None = None
        """Outside the cache: the ``postgres`` user cannot enter root's home."""

    @property
    def dsn(self) -> str:
        user = "postgres" + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"postgresql://{user}@{self.host}:{self._started_port()}/postgres"

    def _as_postgres(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _prepare(self) -> Path:
        self._bin = _bin_dir()
        return self._bin / "postgres"

    def _setup_tmp_dir(self, tmp_dir: Path) -> None:
        assert self._bin is not None
        self._data = Path(tempfile.mkdtemp(prefix="a2r-postgres-"))
        if os.geteuid() == 0:
            shutil.chown(self._data, "postgres")
        initdb = [str(self._bin / "initdb"), "-D", str(self._data / "data"), "-U", "postgres"]
        auth = ["--auth=trust"]
        if self.password is not None:
            password_file = self._data / "password"
            password_file.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(password_file, "postgres")
            auth = ["--auth=scram-sha-256", f"--pwfile={password_file}"]
        done = subprocess.run(
            self._as_postgres([*initdb, *auth, "--no-sync"]),
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise PostgresError(f"initdb failed:\n{done.stdout}{done.stderr}")

    def _server_command(self, python: Path) -> list[str]:
        assert self._data is not None
        settings = {
            "listen_addresses": self.host,
            "port": self._started_port(),
            "unix_socket_directories": self._data,
            "fsync": "off",
            "max_connections": 300,
        }
        options = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
        return self._as_postgres([str(python), "-D", str(self._data / "data"), *options])

    def server_env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def _wait_ready(self, started: float) -> None:
        assert self._bin is not None and self.process is not None
        ready = [str(self._bin / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
        while subprocess.run(ready, check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > started + self.startup_timeout:
                raise PostgresError(f"PostgreSQL did not start.\n{self._log_tail_block()}")
            time.sleep(0.1)

    def _ready_url(self) -> str:
        return self.dsn

    def stop(self, grace: float = 10.0) -> None:
        self._shutdown(grace)
        if self._data is not None:
            shutil.rmtree(self._data, ignore_errors=True)
            self._data = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers.postgres", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run until Ctrl-C, then delete the data")
    serve.add_argument("--port", type=int, help="listen port (default: a free one)")
    args = parser.parse_args(argv)
    server = PostgresServer(args.port)
    body = lambda: serve_foreground(server, [f"export A2R_CHECKPOINT_DB={server.dsn}"])  # noqa: E731
    return cli_errors(
        lambda: run_with_server(server, body, serving=True, stopping="stopping PostgreSQL")
    )


if __name__ == "__main__":
    raise SystemExit(main())
