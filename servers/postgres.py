"""A throwaway PostgreSQL server (Debian's ``postgresql`` package) on a loopback port, its data
in a private temp dir: for the durable-state tests and for trying A2R on Postgres locally.

    python -m servers.postgres serve [--port P]      # prints the DSN; Ctrl-C stops and deletes it

Run as root, it runs the server as the ``postgres`` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from servers._common import ManagedServer, command_line, serve, server_args
from servers.cache import ServerError

INSTALL_HINT = "apt-get install postgresql (Debian), or put PostgreSQL's bin/ on PATH"


class PostgresError(ServerError):
    """PostgreSQL is missing or did not start."""


class PostgresServer(ManagedServer):
    """``postgres`` on 127.0.0.1, database ``postgres``; ``dsn`` reaches it. Trust auth, or
    with ``password``: scram-sha-256 password auth for user ``postgres``, the password in
    ``dsn``."""

    name = "postgres"
    display_name = "PostgreSQL"
    log_prefix = "[a2r-postgres]"
    error_class = PostgresError
    poll_interval = 0.1
    _bin: Path | None = None
    _data: Path | None = None
    """Outside the cache: the ``postgres`` user cannot enter root's home."""

    def __init__(self, *, password: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.password = password

    @property
    def dsn(self) -> str:
        user = "postgres" + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"postgresql://{user}@{self.host}:{self._started_port()}/postgres"

    def _as_postgres(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _prepare(self) -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
        if found[-1] is None:
            raise PostgresError(f"PostgreSQL is not installed: {INSTALL_HINT}")
        self._bin = Path(found[-1]).parent
        return self._bin / "postgres"

    def _command(self, program: Path, tmp_dir: Path) -> list[str]:
        self._data = Path(tempfile.mkdtemp(prefix="a2r-postgres-"))
        auth = ["--auth=trust"]
        if self.password is not None:
            (self._data / "password").write_text(self.password + "\n")
            auth = ["--auth=scram-sha-256", f"--pwfile={self._data / 'password'}"]
        if os.geteuid() == 0:
            for path in (self._data, *self._data.iterdir()):
                shutil.chown(path, "postgres")
        data = str(self._data / "data")
        initdb = [str(program.with_name("initdb")), "-D", data, "-U", "postgres", "--no-sync"]
        done = subprocess.run(
            self._as_postgres([*initdb, *auth]), check=False, capture_output=True, text=True
        )
        if done.returncode:
            raise PostgresError(f"initdb failed:\n{done.stdout}{done.stderr}")
        settings = {"listen_addresses": self.host, "port": self._started_port(), "fsync": "off"}
        settings |= {"unix_socket_directories": self._data, "max_connections": 300}
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
        return self._as_postgres([str(program), "-D", data, *flags])

    def server_env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"} | self.extra_env

    def _is_ready(self) -> bool:
        assert self._bin is not None
        ready = [str(self._bin / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
        return subprocess.run(ready, check=False).returncode == 0

    def stop(self, grace: float | None = None) -> None:
        super().stop(grace)
        if self._data is not None:
            shutil.rmtree(self._data, ignore_errors=True)
            self._data = None


def main(argv: Sequence[str] | None = None) -> int:
    parser, _ = command_line("postgres", __doc__, serve="run until Ctrl-C, then delete the data")
    server = PostgresServer(**server_args(parser.parse_args(argv)))
    return serve(server, lambda: [f"export A2R_CHECKPOINT_DB={server.dsn}"])


if __name__ == "__main__":
    raise SystemExit(main())
