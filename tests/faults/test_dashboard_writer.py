"""A dashboard-like writer doing 50 short writes a second on the same SQLite file while
the workers ingest, aggregate and prune a realistic amount of data, each as a separate
`proxyos-worker run-once` process: the writer never sees "database is locked" (or any
other error). Its longest wait is printed (a figure, not an assertion)."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from db.engine import create_engine, write_transaction
from db.migrate import upgrade
from tests.toolkit.caddy_log import caddy_line
from tests.toolkit.factories import add_route
from tests.toolkit.processes import run_cli

ROUTES = 500
NEW_LINES = 150_000
OLD_ACCESS_ROWS = 200_000
OLD_HEALTH_ROWS = 50_000
WRITER = Path(__file__).with_name("dashboard_writer.py")


def _prepare(db_file: Path, log_file: Path) -> list[str]:
    engine = create_engine(f"sqlite:///{db_file}")
    upgrade(engine)
    rng = random.Random(6)
    now = int(time.time())
    route_ids = [f"route{i:05d}-dashboardxx"[:21] for i in range(ROUTES)]
    with write_transaction(engine) as conn:
        for i, route_id in enumerate(route_ids):
            add_route(conn, f"r{i}.example.test", id=route_id, name=f"r{i}", upstreams="[]", health_check_enabled=0,
                      created_at=now)
    engine.dispose()
    conn = sqlite3.connect(db_file, isolation_level=None)
    conn.execute("BEGIN")
    old = now - 10 * 86400  # older than the 7-day access_log retention; counted by ProxyOS (no seq)
    conn.executemany(
        "INSERT INTO access_log (id, route_id, method, path, status_code, latency_ms, bytes_out, recorded_at)"
        " VALUES (?, ?, 'GET', '/', 200, 12, 512, ?)",
        ((f"old{i:018d}", rng.choice(route_ids), old + i % 86400) for i in range(OLD_ACCESS_ROWS)))
    conn.executemany(
        "INSERT INTO health_checks (id, route_id, checked_at, overall_status) VALUES (?, ?, ?, 'healthy')",
        ((f"hc{i:019d}", route_ids[i % ROUTES], now - 40 * 86400 + i) for i in range(OLD_HEALTH_ROWS)))
    conn.execute("COMMIT")
    conn.close()
    start = time.time() - 3600
    with log_file.open("w") as log:
        for i in range(NEW_LINES):
            # Skewed popularity, as real traffic: a few routes get most requests.
            route = min(int(rng.paretovariate(1.2)) - 1, ROUTES - 1)
            status = rng.choices((200, 301, 404, 503), (90, 4, 5, 1))[0]
            log.write(caddy_line(f"r{route}.example.test", start + i * 3600 / NEW_LINES, status=status,
                                 duration=rng.lognormvariate(-4, 1), size=rng.randint(200, 90_000)))
    return route_ids


def _scalar(db_file: Path, sql: str):
    conn = sqlite3.connect(db_file)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def test_dashboard_writer_is_never_locked_out(worker_env, tmp_path):
    db_file = tmp_path / "proxyos.db"
    log_file = tmp_path / "access.log"
    route_ids = _prepare(db_file, log_file)
    env = dict(worker_env, PROXYOS_DATABASE_URL=f"sqlite:///{db_file}", PROXYOS_ACCESS_LOG=str(log_file),
               PROXYOS_RETENTION_ACCESS_LOG_PER_ROUTE="0")  # every row kept: counted below
    writer = subprocess.Popen([sys.executable, str(WRITER), str(db_file), *route_ids[:50]],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    runs = {}
    try:
        assert writer.stdout.readline().strip() == "ready"
        for job in ("ingest", "aggregate", "prune"):
            started = time.perf_counter()
            done = run_cli(["run-once", job, "--json"], env, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            runs[job] = {"s": round(time.perf_counter() - started, 1), "summary": json.loads(done.stdout)["summary"]}
    finally:
        out, _ = writer.communicate(input="", timeout=60)
    figures = json.loads(out.strip().splitlines()[-1])
    print(f"\ndashboard writer during ingest ({NEW_LINES} lines), aggregate, prune "
          f"({OLD_ACCESS_ROWS} access_log + {OLD_HEALTH_ROWS} health_checks rows): "
          f"{figures['writes']} writes, {figures['error_count']} errors, longest wait {figures['max_wait_ms']} ms, "
          f"p99 {figures['p99_wait_ms']} ms, {figures['waits_over_100ms']} over 100 ms")
    print(json.dumps({"dashboard_writer": figures, "runs": {k: v["s"] for k, v in runs.items()}}))
    assert figures["error_count"] == 0, figures["errors"]
    assert figures["writes"] >= 50, "the writer hardly wrote: the test measured nothing"
    # The workers did the work the writer raced against.
    assert _scalar(db_file, "SELECT count(*) FROM access_log") == NEW_LINES
    assert _scalar(db_file, "SELECT sum(requests) FROM traffic_metrics WHERE bucket = '1m'") == NEW_LINES
    assert _scalar(db_file, "SELECT count(*) FROM health_checks") == 0
    assert _scalar(db_file, "SELECT count(*) FROM audit_log WHERE action = 'route.update'") > 0
    assert _scalar(db_file, "PRAGMA integrity_check") == "ok"
