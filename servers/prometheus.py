"""A Prometheus server (Debian's ``prometheus`` package) scraping local targets, for tests and
for watching a run's metrics next to vLLM's. ``python -m servers.prometheus serve HOST:PORT ...``
scrapes those targets' ``/metrics`` every second on a free loopback port.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servers._common import NO_PROXY_OPENER, ManagedServer, command_line, serve, server_args
from servers.cache import ServerError

INSTALL_HINT = "apt-get install prometheus (Debian), or put a prometheus 2.x binary on PATH"


class PrometheusError(ServerError):
    """Prometheus is missing or did not start."""


class PrometheusServer(ManagedServer):
    """``prometheus`` scraping ``targets`` (``host:port`` or URLs of a ``/metrics`` page) every
    ``interval`` seconds, its data in a private temp dir."""

    name = "prometheus"
    display_name = "Prometheus"
    log_prefix = "[a2r-prometheus]"
    error_class = PrometheusError
    ready_path = "/-/ready"

    def __init__(self, targets: Sequence[str], *, interval: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.targets, self.interval = list(targets), interval

    def query(self, promql: str) -> list[dict]:
        """The instant vector of ``promql`` (``data.result``)."""
        query = urllib.parse.urlencode({"query": promql})
        with NO_PROXY_OPENER.open(f"{self.url}/api/v1/query?{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {body}")
        return body["data"]["result"]

    def _prepare(self) -> Path:
        if (binary := shutil.which("prometheus")) is None:
            raise PrometheusError(f"prometheus is not installed: {INSTALL_HINT}")
        return Path(binary)

    def _command(self, program: Path, tmp_dir: Path) -> list[str]:
        jobs = []
        for i, target in enumerate(self.targets):
            url = urllib.parse.urlsplit(target if "//" in target else f"http://{target}")
            static = {"static_configs": [{"targets": [url.netloc]}]}
            jobs.append({"job_name": f"target{i}", "metrics_path": url.path or "/metrics"} | static)
        interval = f"{round(self.interval * 1000)}ms"
        config = {"global": {"scrape_interval": interval}, "scrape_configs": jobs}
        (tmp_dir / "prometheus.yml").write_text(json.dumps(config))  # YAML is a JSON superset
        return [
            str(program),
            f"--config.file={tmp_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_dir / 'data'}",
            f"--web.listen-address={self.host}:{self._started_port()}",
        ]

    def server_env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin"} | self.extra_env


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = command_line("prometheus", __doc__, serve="scrape TARGETS until Ctrl-C")
    commands["serve"].add_argument("targets", nargs="+", help="host:port or a /metrics URL")
    args = parser.parse_args(argv)
    server = PrometheusServer(args.targets, **server_args(args))
    return serve(server, lambda: [f"# Prometheus on {server.url}"])


if __name__ == "__main__":
    raise SystemExit(main())
