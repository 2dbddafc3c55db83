"""`GET /metrics`'s counters: equal to the truth after ingest (stored rows, rows the
per-route cap counts without storing, a backlog counted by aggregate), never falling when
prune deletes minutes, access_log rows, task_runs and health history, kept across
processes, seeded by migration 0010 from what was counted; and a scrape that never reads
a history table."""

from __future__ import annotations

import json
import random
import re
import time

import sqlalchemy as sa

from db.engine import create_engine, write_transaction
from db.schema import access_log, cert_deployments, health_checks, task_runs, traffic_metrics, traffic_rollups
from tasks.certs.policy import renew_at
from tasks.health.store import write_results
from tasks.health.verdict import CheckResult
from tasks.retention.prune import Pacing, prune
from tasks.retention.rules import DAY_S
from tasks.traffic import state
from tasks.traffic.aggregate import aggregate
from tasks.traffic.ingest import ingest
from tests.metrics.scrape import labelled, route_counters, scrape, value
from tests.toolkit.caddy_log import append, caddy_line, random_lines
from tests.toolkit.databases import upgrade_to
from tests.toolkit.factories import add_certificate, add_route, add_stream
from tests.toolkit.processes import run_cli
from tests.toolkit.traffic import NOW, count_rows
from workers.history import RunHistory
from workers.settings import retention as settings_retention

HOSTS = {"ra": "a.metrics.test", "rb": "b.metrics.test", "rc": "c.metrics.test"}


def _routes(engine) -> None:
    with write_transaction(engine) as conn:
        for route_id, domain in HOSTS.items():
            add_route(conn, domain, id=route_id)


def _truth(lines: list[str]) -> dict[str, tuple[int, int, int]]:
    """{route_id: (requests, errors, bytes)} from the log lines themselves."""
    by_host = {domain: route for route, domain in HOSTS.items()}
    out: dict[str, list[int]] = {}
    for line in lines:
        entry = json.loads(line)
        route = by_host.get(entry["request"]["host"])
        if route:
            sums = out.setdefault(route, [0, 0, 0])
            sums[0] += 1
            sums[1] += entry["status"] >= 500
            sums[2] += entry["size"]
    return {route: tuple(sums) for route, sums in out.items()}


def test_route_counters_equal_the_log_after_ingest_with_the_cap(any_engine, tmp_path):
    """The cap (5 rows a route) counts most rows without storing them: they count too."""
    _routes(any_engine)
    log = tmp_path / "access.log"
    rng = random.Random(13)
    now = int(time.time())
    lines = random_lines(rng, list(HOSTS.values()), 3000, now - 3600, 3600)
    append(log, "".join(lines[:1000]) + "not json\n" + caddy_line("nobody.test", now - 5))
    ingest(any_engine, log, keep_per_route=5, batch_lines=300)
    append(log, "".join(lines[1000:]))
    ingest(any_engine, log, keep_per_route=5, batch_lines=700)
    assert count_rows(any_engine, access_log) == 15  # the rest was counted, never stored
    samples = scrape(any_engine, log)
    assert route_counters(samples) == _truth(lines)
    source = {"source": str(log)}
    assert value(samples, "proxyos_worker_traffic_lines_ingested_total", **source) == 3002
    assert value(samples, "proxyos_worker_traffic_lines_malformed_total", **source) == 1
    assert value(samples, "proxyos_worker_traffic_lines_unmatched_total", **source) == 1
    assert value(samples, "proxyos_worker_traffic_rows_not_aggregated") == 0
    assert value(samples, "proxyos_worker_traffic_ingest_behind_bytes", **source) == 0
    assert value(samples, "proxyos_worker_traffic_ingest_lag_seconds", **source) == 0


def test_a_backlog_counted_by_aggregate_is_added_once(any_engine):
    """Rows stored but not counted (an upgrade's backlog) are added by aggregate; a second
    run adds nothing."""
    _routes(any_engine)
    rows = [{"id": f"bk{i:05d}", "route_id": ("ra", "rb")[i % 2], "status_code": (200, 503)[i % 3 == 0],
             "bytes_out": i, "latency_ms": 5, "recorded_at": NOW - i, "seq": i + 1, "latency_bin": 10}
            for i in range(500)]
    with write_transaction(any_engine) as conn:
        conn.execute(access_log.insert(), rows)
        state.ensure(conn, state.INGEST_SEQ)
        state.ensure(conn, state.AGGREGATED_SEQ)
        state.compare_and_set(conn, state.INGEST_SEQ, 0, 500)
    assert value(scrape(any_engine), "proxyos_worker_traffic_rows_not_aggregated") == 500
    aggregate(any_engine, batch_rows=120)
    aggregate(any_engine, batch_rows=120)
    expected = {route: (sum(1 for r in rows if r["route_id"] == route),
                        sum(1 for r in rows if r["route_id"] == route and r["status_code"] >= 500),
                        sum(r["bytes_out"] for r in rows if r["route_id"] == route)) for route in ("ra", "rb")}
    samples = scrape(any_engine)
    assert route_counters(samples) == expected
    assert value(samples, "proxyos_worker_traffic_rows_not_aggregated") == 0


def _runs(engine) -> None:
    """Runs of `ingest` 40 and 1 days before NOW: ok (3 ms, 2 s), error (70 s), skipped."""
    history = RunHistory(engine)
    for i, (age, status, ms) in enumerate([(40, "ok", 3), (40, "error", 70_000), (1, "ok", 2_000),
                                           (1, "skipped", 0)]):
        started = NOW - age * DAY_S
        history.started({"id": f"run{i}", "job": "ingest", "status": "running", "started_at": started})
        history.finished(f"run{i}", status=status, finished_at=started + ms / 1000, duration_ms=ms,
                         error=None, summary=None)


def _checks(engine) -> None:
    """Health results of a route and a stream, 40 and 1 days before NOW."""
    stream = add_stream(engine, id="s1", listen_port=9001)
    results = [CheckResult("route", "ra", "a", status, NOW - age * DAY_S, response_time_ms=ms)
               for age, status, ms in [(40, "healthy", 20), (40, "unhealthy", None), (1, "healthy", 30)]]
    results.append(CheckResult("stream", stream, "s", "healthy", NOW - DAY_S, response_time_ms=4))
    write_results(engine, results, rise=1, fall=1)


def _history_rows(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "1m": conn.execute(sa.select(sa.func.count()).select_from(traffic_metrics)).scalar(),
            "access_log": conn.execute(sa.select(sa.func.count()).select_from(access_log)).scalar(),
            "task_runs": conn.execute(sa.select(sa.func.count()).select_from(task_runs)).scalar(),
            "health_checks": conn.execute(sa.select(sa.func.count()).select_from(health_checks)).scalar(),
        }


def test_counters_do_not_fall_when_prune_deletes_their_rows(any_engine, tmp_path):
    _routes(any_engine)
    log = tmp_path / "access.log"
    lines = [caddy_line(HOSTS[route], NOW - age * DAY_S + i, status=status, size=100 + i)
             for i, (route, age, status) in enumerate(
                 [("ra", 100, 200), ("ra", 100, 502), ("rb", 10, 200), ("ra", 1, 200), ("rb", 0.01, 500)] * 20)]
    append(log, "".join(lines))
    ingest(any_engine, log, clock=lambda: NOW)
    _runs(any_engine)
    _checks(any_engine)
    before = scrape(any_engine)
    assert route_counters(before) == _truth(lines)
    assert value(before, "proxyos_worker_job_runs_total", job="ingest", status="ok") == 2
    assert value(before, "proxyos_worker_job_runs_total", job="ingest", status="error") == 1
    assert value(before, "proxyos_worker_job_runs_total", job="ingest", status="skipped") == 1
    # The histogram: ok and error runs (3 ms, 2 s, 70 s), cumulative buckets.
    assert value(before, "proxyos_worker_job_duration_seconds_bucket", job="ingest", le="0.01") == 1
    assert value(before, "proxyos_worker_job_duration_seconds_bucket", job="ingest", le="10") == 2
    assert value(before, "proxyos_worker_job_duration_seconds_bucket", job="ingest", le="60") == 2
    assert value(before, "proxyos_worker_job_duration_seconds_bucket", job="ingest", le="+Inf") == 3
    assert value(before, "proxyos_worker_job_duration_seconds_count", job="ingest") == 3
    assert value(before, "proxyos_worker_job_duration_seconds_sum", job="ingest") == 72.003
    assert value(before, "proxyos_worker_job_last_success_timestamp_seconds", job="ingest") == NOW - DAY_S + 2
    assert value(before, "proxyos_worker_route_health_checks_total", route_id="ra", result="healthy") == 2
    assert value(before, "proxyos_worker_route_health_checks_total", route_id="ra", result="unhealthy") == 1
    assert value(before, "proxyos_worker_route_health_check_duration_seconds_count", route_id="ra") == 2
    assert value(before, "proxyos_worker_route_health_check_duration_seconds_sum", route_id="ra") == 0.05
    assert value(before, "proxyos_worker_route_health_state", route_id="ra", status="healthy") == 1
    assert value(before, "proxyos_worker_stream_health_checks_total", stream_id="s1", result="healthy") == 1
    assert value(before, "proxyos_worker_stream_health_check_duration_seconds_count", stream_id="s1") == 1
    assert value(before, "proxyos_worker_stream_health_check_duration_seconds_sum", stream_id="s1") == 0.004
    assert value(before, "proxyos_worker_stream_health_state", stream_id="s1", status="healthy") == 1
    # Each route's domain (and stream's port) once, on its info series; the other
    # series of a route or stream carry its id and nothing that repeats the info.
    assert labelled(before, "proxyos_worker_route_info") == {
        (("domain", domain), ("route_id", route)) for route, domain in HOSTS.items()}
    assert labelled(before, "proxyos_worker_stream_info") == {
        (("listen_port", "9001"), ("protocol", "tcp"), ("stream_id", "s1"))}
    assert all(value(before, "proxyos_worker_route_info", route_id=route) == 1 for route in HOSTS)
    for name, labels in before:
        if name.startswith(("proxyos_worker_route_", "proxyos_worker_stream_")) and not name.endswith("_info"):
            assert {key for key, _ in labels} <= {"route_id", "stream_id", "status", "result"}, (name, labels)
    rows_before = _history_rows(any_engine)

    rules = settings_retention.load({"PROXYOS_RETENTION_HEALTH_CHECKS_KEEP": "1"}).rules()
    prune(any_engine, rules, now=NOW, pacing=Pacing(pause_ms=0), sleep=lambda _s: None)
    rows_after = _history_rows(any_engine)
    assert all(rows_after[table] < rows_before[table] for table in rows_before), (rows_before, rows_after)

    after = scrape(any_engine)
    counters = {key: v for key, v in before.items() if key[0].endswith(("_total", "_count", "_sum", "_bucket"))}
    assert counters, "no counters scraped"
    assert {key: after.get(key) for key in counters} == counters


def test_certificate_gauges(any_engine):
    """One series a certificate and gauge, by certificate_id and domain: the next renewal
    (stored, or by the lifetime rule; the retry time while failing; now while still to be
    issued) only for the certificates the workers renew, and `deployed` only for those
    they load into Caddy."""
    issued, expires = NOW - 30 * DAY_S, NOW + 60 * DAY_S
    with write_transaction(any_engine) as conn:
        for route in ("r1", "r2", "r3", "r4"):
            add_route(conn, f"{route}.certs.test", id=route, tls_mode="dns")
        add_route(conn, "r5.certs.test", id="r5", tls_mode="auto")
        dated = {"issued_at": issued, "expires_at": expires}
        add_certificate(conn, "r1.certs.test", id="c1", route_id="r1", status="active", renew_at=NOW + DAY_S,
                        **dated)
        add_certificate(conn, "r2.certs.test", id="c2", route_id="r2", status="active", **dated)
        add_certificate(conn, "r3.certs.test", id="c3", route_id="r3", status="error", failures=3,
                        next_attempt_at=NOW + 600, **dated)
        add_certificate(conn, "r4.certs.test", id="c4", route_id="r4")  # provisioning, no dates yet
        add_certificate(conn, "r5.certs.test", id="c5", route_id="r5", source="auto", status="active", **dated)
        conn.execute(cert_deployments.insert(), [{"certificate_id": "c1", "target": "caddy", "pending_since": None},
                                                 {"certificate_id": "c3", "target": "caddy", "pending_since": NOW}])
    samples = scrape(any_engine, clock=lambda: NOW)
    domains = {f"c{i}": f"r{i}.certs.test" for i in range(1, 6)}

    def gauge(name: str) -> dict[str, float]:
        found = {dict(labels)["certificate_id"]: v for (n, labels), v in samples.items()
                 if n == f"proxyos_worker_certificate_{name}"}
        assert all(dict(labels)["domain"] == domains[dict(labels)["certificate_id"]]
                   for n, labels in samples if n == f"proxyos_worker_certificate_{name}")
        return found

    assert gauge("expiry_seconds") == {c: 60 * DAY_S for c in ("c1", "c2", "c3", "c5")}
    assert gauge("next_renewal_timestamp_seconds") == {
        "c1": NOW + DAY_S, "c2": renew_at(issued, expires), "c3": NOW + 600, "c4": NOW}
    assert gauge("consecutive_failures") == {"c1": 0, "c2": 0, "c3": 3, "c4": 0, "c5": 0}
    assert gauge("deployed") == {"c1": 1, "c3": 0}


def test_counters_survive_new_processes(worker_env, tmp_path):
    """Two `run-once ingest` processes, each a fresh start: the counters add up, in a
    third process's reading as in this one's."""
    log = tmp_path / "access.log"
    env = {**worker_env, "PROXYOS_ACCESS_LOG": str(log)}
    assert run_cli(["migrate"], env).returncode == 0
    engine = create_engine(env["PROXYOS_DATABASE_URL"])
    try:
        _routes(engine)
        now = time.time()
        first = [caddy_line(HOSTS["ra"], now - i, status=200 + 300 * (i % 4 == 0), size=i) for i in range(40)]
        append(log, "".join(first))
        assert run_cli(["run-once", "ingest"], env).returncode == 0
        assert route_counters(scrape(engine, log)) == _truth(first)
        second = [caddy_line(HOSTS["rb"], now - i, size=7) for i in range(25)]
        append(log, "".join(second))
        assert run_cli(["run-once", "ingest"], env).returncode == 0
        samples = scrape(engine, log)
        assert route_counters(samples) == _truth(first + second)
        assert value(samples, "proxyos_worker_job_runs_total", job="ingest", status="ok") == 2
    finally:
        engine.dispose()


def test_migration_0010_seeds_the_totals_from_what_was_counted(any_url):
    """Per route and column, the largest of the 1d, 1h and workers' 1m sums (each a lower
    bound: every one of them holds all counted requests of the time it still covers);
    ProxyOS's own 1m rows are not the workers' count; task_runs' finished runs."""
    engine = create_engine(any_url)
    try:
        upgrade_to(engine, "0009")

        def bucket(id_: str, route: str, size: str, requests: int, errors: int, bytes_: int) -> dict:
            return {"id": id_, "route_id": route, "bucket": size, "bucket_ts": NOW * 1000,
                    "requests": requests, "errors": errors, "bytes": bytes_}

        with engine.begin() as conn:
            conn.execute(traffic_rollups.insert(), [
                bucket("1d-a1", "ra", "1d", 100, 5, 1000), bucket("1d-a2", "ra", "1d", 50, 0, 500),
                bucket("1h-a1", "ra", "1h", 40, 6, 400),  # 1h pruned further back: smaller
                bucket("1h-b1", "rb", "1h", 30, 1, 300),  # 1d pruned (kept shorter than 1h)
            ])
            conn.execute(traffic_metrics.insert(), [
                bucket(f"1m-{NOW * 1000}-ra", "ra", "1m", 10, 1, 100),
                bucket(f"1m-{NOW * 1000}-rb", "rb", "1m", 12, 0, 120),
                bucket("proxyosOwnRowId000001", "rc", "1m", 99, 9, 999),  # ProxyOS's own row
            ])
            conn.execute(task_runs.insert(), [
                {"id": "t1", "job": "prune", "status": "ok", "started_at": NOW, "finished_at": NOW + 1,
                 "duration_ms": 1000},
                {"id": "t2", "job": "prune", "status": "ok", "started_at": NOW + 9, "finished_at": NOW + 9.5,
                 "duration_ms": 500},
                {"id": "t3", "job": "prune", "status": "running", "started_at": NOW + 20, "finished_at": None,
                 "duration_ms": None},
            ])
        upgrade_to(engine, "head")
        with engine.connect() as conn:
            totals = {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
                "SELECT route_id, requests, errors, bytes FROM traffic_route_totals"))}
            runs = conn.execute(sa.text(
                "SELECT job, status, runs, timed, duration_ms_sum, le_100, le_1000, le_10000, last_finished_at"
                " FROM task_run_totals")).all()
        assert totals == {"ra": (150, 6, 1500), "rb": (30, 1, 300)}
        assert [tuple(r) for r in runs] == [("prune", "ok", 2, 2, 1500, 0, 2, 2, NOW + 9.5)]
    finally:
        engine.dispose()


HISTORY = re.compile(r"\b(access_log|traffic_metrics|traffic_rollups|task_runs|health_checks|"
                     r"stream_health_checks|health_events)\b", re.IGNORECASE)


def test_a_scrape_reads_no_history_table(any_engine, tmp_path):
    """Every statement of a scrape reads totals, state or configuration: bounded by the
    routes, streams, certificates and jobs, never by the rows retention prunes."""
    _routes(any_engine)
    log = tmp_path / "access.log"
    append(log, "".join(caddy_line(HOSTS["ra"], time.time() - i) for i in range(10)))
    ingest(any_engine, log)
    _runs(any_engine)
    statements: list[str] = []

    @sa.event.listens_for(any_engine, "before_cursor_execute")
    def _seen(conn, cursor, statement, params, context, executemany):
        statements.append(statement)

    scrape(any_engine, log)
    assert statements
    assert [s for s in statements if HISTORY.search(s)] == []
