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

from servers._common import NO_PROXY_OPENER, ManagedServer, serve, serve_parser
from servers.cache import ServerError

INSTALL_HINT = "apt-get install prometheus (Debian), or put a prometheus 2.x binary on PATH"


class PrometheusError(ServerError):
    """Prometheus is missing or did not start."""


class PrometheusServer(ManagedServer):
    """``prometheus`` scraping ``targets`` (``host:port`` or URLs of a ``/metrics`` page) every
    ``interval`` seconds, its data in a private temp dir."""

    display_name = "Prometheus"
    log_prefix = "[a2r-prometheus]"
    error_class = PrometheusError
    tmp_prefix = "prometheus-"
    log_glob = "prometheus-*.log"
    ready_path = "/-/ready"

    def __init__(
        self, targets: Sequence[str], *, interval: float = 1.0, port: int | None = None
    ) -> None:
        super().__init__(port)
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
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusError(f"prometheus is not installed: {INSTALL_HINT}")
        return Path(binary)

    def _setup_tmp_dir(self, tmp_dir: Path) -> None:
        jobs = []
        for i, target in enumerate(self.targets):
            parts = urllib.parse.urlsplit(target if "//" in target else f"http://{target}")
            jobs.append(
                {
                    "job_name": f"target{i}",
                    "metrics_path": parts.path or "/metrics",
                    "static_configs": [{"targets": [parts.netloc]}],
                }
            )
        interval = f"{round(self.interval * 1000)}ms"
        config = {"global": {"scrape_interval": interval}, "scrape_configs": jobs}
        (tmp_dir / "prometheus.yml").write_text(json.dumps(config))  # YAML is a JSON superset

    def _server_command(self, python: Path) -> list[str]:
        assert self._tmp_dir is not None
        return [
            str(python),
            f"--config.file={self._tmp_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self._tmp_dir / 'data'}",
            f"--web.listen-address={self.host}:{self._started_port()}",
        ]

    def server_env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin"}


def main(argv: Sequence[str] | None = None) -> int:
    parser, command = serve_parser("servers.prometheus", __doc__, "scrape TARGETS until Ctrl-C")
    command.add_argument("targets", nargs="+", help="host:port or a /metrics URL")
    args = parser.parse_args(argv)
    server = PrometheusServer(args.targets, port=args.port)
    return serve(server, lambda: [f"# Prometheus on {server.url}"])


if __name__ == "__main__":
    raise SystemExit(main())
