"""Another writer in the workers' tables: ProxyOS's collector and health checker, with
rows written the way ProxyOS writes them, detected, named in `status`, warned about at
most once an hour, and never counted by the workers."""

from __future__ import annotations

import json
import logging
import time

import sqlalchemy as sa

from db.engine import create_engine, write_transaction
from db.schema import access_log, health_checks, traffic_metrics
from db.sql import new_id
from tasks.health.batch import run_batch
from tasks.health.settings import HealthSettings
from tasks.health.store import write_results
from tasks.health.verdict import CheckResult
from tasks.other_writers import detect, in_access_log, in_health_checks, in_traffic_metrics
from tasks.traffic.aggregate import aggregate
from tasks.traffic.ingest import ingest
from tests.toolkit.caddy_log import caddy_line
from tests.toolkit.factories import add_route, ups
from tests.toolkit.processes import run_cli
from workers import config
from workers.other_writers import WriterWatch
from workers.registry import JobContext

ROUTE, DOMAIN = "V1StGXR8_Z5jdHi6B-myT", "app.example.test"


# --- ProxyOS's loops, transcribed ----------------------------------------------------------

def proxyos_collect(conn, entry: dict, route_id: str = ROUTE) -> None:
    """packages/analytics/src/collector.ts processEntry (and trimAccessLog): one access_log row
    with a nanoid id and no seq, then its own `1m` row updated or created with a nanoid id."""
    status = entry.get("status") or 0
    recorded_at = int(entry["ts"])  # drizzle `timestamp` mode: whole seconds
    latency_ms = round((entry.get("duration") or 0) * 1000)
    request = entry["request"]
    conn.execute(access_log.insert().values(
        id=new_id(), route_id=route_id, method=request.get("method"), path=request.get("uri"),
        status_code=status, latency_ms=latency_ms, bytes_out=entry.get("size") or 0,
        client_ip=request.get("remote_ip"), user_agent=(request.get("headers", {}).get("User-Agent") or [None])[0],
        recorded_at=recorded_at,
    ))
    ids = conn.execute(sa.select(access_log.c.id).where(access_log.c.route_id == route_id)
                       .order_by(access_log.c.recorded_at)).scalars().all()
    for old in ids[: max(len(ids) - 1000, 0)]:
        conn.execute(access_log.delete().where(access_log.c.id == old))
    bucket_ts = int(entry["ts"] * 1000) // 60_000 * 60_000
    existing = conn.execute(sa.select(traffic_metrics).where(
        traffic_metrics.c.route_id == route_id, traffic_metrics.c.bucket == "1m",
        traffic_metrics.c.bucket_ts == bucket_ts)).mappings().first()
    counts = {f"status_{k}xx": int(status // 100 == k) for k in (2, 3, 4, 5)}
    if existing:
        conn.execute(traffic_metrics.update().where(traffic_metrics.c.id == existing["id"]).values(
            requests=existing["requests"] + 1, bytes=existing["bytes"] + (entry.get("size") or 0),
            errors=existing["errors"] + int(status >= 500), latency_sum_ms=existing["latency_sum_ms"] + latency_ms,
            **{k: existing[k] + v for k, v in counts.items()},
        ))
    else:
        conn.execute(traffic_metrics.insert().values(
            id=new_id(), route_id=route_id, bucket="1m", bucket_ts=bucket_ts, requests=1,
            bytes=entry.get("size") or 0, errors=int(status >= 500), latency_sum_ms=latency_ms, **counts,
        ))


def proxyos_health_check(conn, route_id: str, checked_at: int) -> None:
    """packages/api/src/automation/health-checker.ts: a healthy result, nanoid id."""
    conn.execute(health_checks.insert().values(
        id=new_id(), route_id=route_id, checked_at=checked_at, status_code=200, response_time_ms=3,
        body_matched=None, overall_status="healthy", error=None,
    ))


def caddy_entry(ts: float, status: int = 200) -> dict:
    return json.loads(caddy_line(DOMAIN, ts, status=status, size=100))


def both_write(engine, log_path, entries: list[dict]) -> None:
    """Caddy logs the requests; ProxyOS's collector stores each one as it comes."""
    with log_path.open("a") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in entries)
    for entry in entries:
        with write_transaction(engine) as conn:
            proxyos_collect(conn, entry)


# --- traffic ---------------------------------------------------------------------------

def test_the_collector_writing_after_the_workers_took_over_is_seen_and_never_counted(any_engine, tmp_path):
    now = time.time()
    log_path = tmp_path / "access.log"
    add_route(any_engine, DOMAIN, id=ROUTE, upstreams=ups("127.0.0.1:9"))
    # ProxyOS alone, before the workers: its rows are not another writer's.
    both_write(any_engine, log_path, [caddy_entry(now - 600 + i) for i in range(5)])
    assert ingest(any_engine, log_path)["already_stored"] == 5
    aggregate(any_engine)
    assert detect(any_engine, ["access_log", "traffic_metrics"], now) == []

    # The workers ingest on their own: still nobody else.
    with log_path.open("a") as fh:
        fh.writelines(json.dumps(caddy_entry(now - 300 + i)) + "\n" for i in range(3))
    assert ingest(any_engine, log_path)["inserted"] == 3
    aggregate(any_engine)
    assert detect(any_engine, ["access_log", "traffic_metrics"], now) == []

    # ProxyOS's collector keeps running: each request is stored twice.
    minute = (int(now) - 120) // 60 * 60
    both_write(any_engine, log_path, [caddy_entry(minute + i, status=500 if i == 0 else 200) for i in range(4)])
    assert ingest(any_engine, log_path)["inserted"] == 4
    aggregate(any_engine)
    with any_engine.connect() as conn:
        in_log = in_access_log(conn, now)
        in_metrics = in_traffic_metrics(conn, now)
        ours = conn.execute(sa.select(traffic_metrics).where(
            traffic_metrics.c.id == f"1m-{minute * 1000}-{ROUTE}")).mappings().one()
        theirs = conn.execute(sa.select(traffic_metrics).where(
            traffic_metrics.c.bucket_ts == minute * 1000, traffic_metrics.c.id != ours["id"])).mappings().one()
    assert in_log is not None and in_log.rows == 4 and in_log.newest_at == minute + 3
    assert "ProxyOS's analytics collector" in in_log.message() and "PROXYOS_ACCESS_LOG" in in_log.message()
    assert "PROXYOS_JOBS=all,-ingest,-aggregate" in in_log.message()
    assert in_metrics is not None and in_metrics.table == "traffic_metrics" and in_metrics.rows == 1
    # The workers counted only the rows they ingested (with seq), not ProxyOS's copies.
    assert (ours["requests"], ours["errors"], ours["status_5xx"]) == (4, 1, 1)
    assert (theirs["requests"], theirs["errors"]) == (4, 1)


def test_without_a_first_ingest_proxyos_writing_alone_is_no_conflict(any_engine, tmp_path):
    now = time.time()
    add_route(any_engine, DOMAIN, id=ROUTE, upstreams=ups("127.0.0.1:9"))
    both_write(any_engine, tmp_path / "access.log", [caddy_entry(now - 60)])
    assert detect(any_engine, ["access_log", "traffic_metrics"], now) == []


# --- health ----------------------------------------------------------------------------

def test_the_health_checker_is_told_from_the_workers_checks(any_engine, upstream):
    add_route(any_engine, DOMAIN, id=ROUTE, upstreams=ups(upstream.address))
    settings = HealthSettings(timeout=2.0, write_delay=0.05)
    start = int(time.time())
    # Rows written before the workers marked their ids (or ran at all) are not counted.
    with write_transaction(any_engine) as conn:
        proxyos_health_check(conn, ROUTE, start - 120)
    for _ in range(2):  # the workers' own checks, through the real probe and writer
        report = run_batch(any_engine, settings, [(ROUTE, None)])
        assert [r.status for r in report.results] == ["healthy"]
    with any_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(health_checks)).scalar() == 3
        assert in_health_checks(conn, time.time()) is None

    with write_transaction(any_engine) as conn:
        proxyos_health_check(conn, ROUTE, start + 1)
    with any_engine.connect() as conn:
        found = in_health_checks(conn, time.time())
    assert found is not None and found.rows == 1 and found.newest_at == start + 1
    assert "ProxyOS's health checker" in found.message() and "PROXYOS_JOBS=all,-health" in found.message()


def _our_check(engine, at: float) -> None:
    write_results(engine, [CheckResult("route", ROUTE, ROUTE, "healthy", started_at=at, status_code=200)], 2, 3)


def test_the_log_warns_at_most_once_an_hour_per_table(engine, sqlite_url, tmp_path, caplog):
    add_route(engine, DOMAIN, id=ROUTE, upstreams=ups("127.0.0.1:9"))
    t = time.time()
    clock = [t]
    watch = WriterWatch(clock=lambda: clock[0])
    ctx = JobContext(config.load({"PROXYOS_DATABASE_URL": sqlite_url, "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db"}))
    warnings = lambda: [r for r in caplog.records if r.name == "proxyos.other_writers" and r.levelno == logging.WARNING]  # noqa: E731
    caplog.set_level(logging.INFO, logger="proxyos.other_writers")
    try:
        for offset, checks, warns in [(0, True, 1), (60, False, 1), (300, True, 1), (3300, True, 1), (3600, True, 2)]:
            clock[0] = t + offset
            _our_check(engine, t + offset - 2)  # both keep writing, the workers a moment first
            with write_transaction(engine) as conn:
                proxyos_health_check(conn, ROUTE, int(t + offset))
            found = watch.after_run(ctx, "health-batch")
            assert bool(found) == checks, offset
            assert len(warnings()) == warns, offset
        assert watch.after_run(ctx, "backup") == []  # writes none of the watched tables
        assert "ProxyOS's health checker is also writing health_checks" in warnings()[0].getMessage()
    finally:
        ctx.close()


def test_a_table_whose_jobs_are_disabled_is_not_watched(engine, sqlite_url, tmp_path, caplog):
    add_route(engine, DOMAIN, id=ROUTE, upstreams=ups("127.0.0.1:9"))
    t = time.time()
    _our_check(engine, t - 5)
    with write_transaction(engine) as conn:
        proxyos_health_check(conn, ROUTE, int(t))
    env = {"PROXYOS_DATABASE_URL": sqlite_url, "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db"}
    off = JobContext(config.load({**env, "PROXYOS_JOBS": "all,-health"}))
    on = JobContext(config.load(env))
    try:
        assert WriterWatch(clock=lambda: t).after_run(off, "health-batch") == []
        assert [w.table for w in WriterWatch(clock=lambda: t).after_run(on, "health-batch")] == ["health_checks"]
    finally:
        off.close()
        on.close()


# --- status and cost ----------------------------------------------------------------------

def test_status_names_the_other_writer_and_what_to_set(worker_env, sqlite_url):
    assert run_cli(["migrate"], worker_env).returncode == 0
    engine = create_engine(sqlite_url)
    add_route(engine, DOMAIN, id=ROUTE, upstreams=ups("127.0.0.1:9"))
    t = time.time()
    _our_check(engine, t - 5)
    with write_transaction(engine) as conn:
        proxyos_health_check(conn, ROUTE, int(t))
    engine.dispose()

    report = json.loads(run_cli(["status", "--json"], worker_env).stdout)
    [writer] = report["other_writers"]
    assert writer["table"] == "health_checks" and writer["writer"] == "ProxyOS's health checker"
    assert writer["rows"] == 1 and "PROXYOS_JOBS=all,-health" in writer["message"]
    text = run_cli(["status"], worker_env).stdout
    assert "other writers:" in text and "ProxyOS's health checker is also writing health_checks" in text
    # Left to ProxyOS on purpose: not a conflict.
    quiet = json.loads(run_cli(["status", "--json"], dict(worker_env, PROXYOS_JOBS="all,-health")).stdout)
    assert quiet["other_writers"] == []


def test_detection_reads_the_tables_through_their_indexes(engine, tmp_path):
    """EXPLAIN QUERY PLAN of every statement the checks run: no full scan of a big table."""
    add_route(engine, DOMAIN, id=ROUTE, upstreams=ups("127.0.0.1:9"))
    t = time.time()
    both_write(engine, tmp_path / "access.log", [caddy_entry(t - 30)])
    ingest(engine, tmp_path / "access.log")
    _our_check(engine, t - 5)
    statements: list[tuple[str, object]] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", remember)
    try:
        detect(engine, ["access_log", "traffic_metrics", "health_checks"], t)
    finally:
        sa.event.remove(engine, "before_cursor_execute", remember)
    scans = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters):
                detail = row[-1]
                for table in ("access_log", "traffic_metrics", "health_checks"):
                    if detail.startswith(f"SCAN {table}") and "INDEX" not in detail:
                        scans.append(detail)
    assert any("health_checks" in s for s, _ in statements) and any("traffic_metrics" in s for s, _ in statements)
    assert scans == []
