"""A real Prometheus server (Debian's /usr/bin/prometheus) scrapes `GET /metrics` of
`proxyos-worker serve` (PROXYOS_METRICS_PUBLIC=1) every second: its HTTP API returns the
routes' request counters with the values of the log, and after `prune` deletes the
minutes and access_log rows they were counted into (and new lines come in), the counters
have gone on rising, never reset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from db.schema import access_log, traffic_metrics
from tasks.retention.prune import Pacing, prune
from tasks.retention.rules import DAY_S
from tasks.traffic.ingest import ingest
from tests.toolkit.caddy_log import append, caddy_line
from tests.toolkit.factories import add_route, new_secret
from tests.toolkit.processes import free_port, stop_process, wait_for_start, wait_until
from tests.toolkit.traffic import count_rows
from workers.settings import retention as settings_retention

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"  # Debian's package (dev.sh installs it)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def _answers(url: str) -> bool:
    try:
        return bool(_get(url) is not None)
    except OSError:
        return False


def _query(base: str, expr: str, key: str = "route_id") -> dict[str, float]:
    """An instant query: {the `key` label (or "") : value}."""
    body = json.loads(_get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"))
    assert body["status"] == "success", body
    return {r["metric"].get(key, ""): float(r["value"][1]) for r in body["data"]["result"]}


def _start(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def test_prometheus_scrapes_counters_that_do_not_fall_after_prune(engine, worker_env, tmp_path):
    log = tmp_path / "access.log"
    add_route(engine, "a.prom.test", id="ra")
    add_route(engine, "b.prom.test", id="rb")
    now = time.time()
    old = [caddy_line("a.prom.test", now - 100 * DAY_S + i, status=200 if i % 4 else 502, size=10)
           for i in range(40)]
    old += [caddy_line("b.prom.test", now - 20 * DAY_S + i, size=10) for i in range(15)]
    append(log, "".join(old))
    ingest(engine, log)

    port, prom_port = free_port(), free_port()
    env = {**worker_env, "PROXYOS_ACCESS_LOG": str(log), "PROXYOS_METRICS_PUBLIC": "1",
           "PROXYOS_SECRET": new_secret(), "PROXYOS_API_LISTEN": f"127.0.0.1:{port}"}
    exporter = _start([sys.executable, "-m", "workers.cli", "serve"], tmp_path / "serve.log", env)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: proxyos-worker\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    prometheus = _start([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                         f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log")
    base = f"http://127.0.0.1:{prom_port}"
    try:
        wait_for_start(lambda: _answers(f"http://127.0.0.1:{port}/metrics"), "proxyos-worker serve", exporter,
                       tmp_path / "serve.log")
        wait_for_start(lambda: _answers(f"{base}/-/ready"), "Prometheus", prometheus, tmp_path / "prometheus.log",
                       timeout=60)
        requests = "proxyos_worker_route_requests_total"
        wait_until(lambda: _query(base, requests) == {"ra": 40, "rb": 15}, timeout=60,
                   what="Prometheus to hold the ingested request counts")
        assert _query(base, "proxyos_worker_route_errors_total") == {"ra": 10, "rb": 0}
        # The domain is on the route's info series only: joined as README shows.
        by_domain = ("sum by (domain) (proxyos_worker_route_requests_total"
                     " * on (route_id) group_left (domain) proxyos_worker_route_info)")
        assert _query(base, by_domain, key="domain") == {"a.prom.test": 40, "b.prom.test": 15}

        minutes, rows = count_rows(engine, traffic_metrics), count_rows(engine, access_log)
        prune(engine, settings_retention.load({}).rules(), now=time.time(), pacing=Pacing(pause_ms=0),
              sleep=lambda _s: None)
        assert count_rows(engine, traffic_metrics) < minutes and count_rows(engine, access_log) < rows
        append(log, "".join(caddy_line("a.prom.test", time.time() - i, size=10) for i in range(5)))
        ingest(engine, log)

        wait_until(lambda: _query(base, requests) == {"ra": 45, "rb": 15}, timeout=60,
                   what="Prometheus to see the new requests after prune")
        # Scrapes from before and after the prune: no fall anywhere in between.
        wait_until(lambda: _query(base, f"count_over_time({requests}[5m])").get("ra", 0) >= 3, timeout=30,
                   what="several scrapes in the range")
        assert _query(base, f"resets({requests}[5m])") == {"ra": 0, "rb": 0}
        assert _query(base, "resets(proxyos_worker_route_sent_bytes_total[5m])") == {"ra": 0, "rb": 0}
        assert _query(base, 'up{job="proxyos-worker"}') == {"": 1}
    finally:
        stop_process(prometheus)
        stop_process(exporter)
