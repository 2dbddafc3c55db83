"""Prune: the retention rules, never an uncounted row, short batches, WAL truncation,
and a concurrent writer during a prune of a million rows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import sqlite_path, write_transaction
from db.schema import access_log, audit_log, health_checks, task_runs, traffic_metrics, traffic_rollups
from tasks.retention.prune import MIN_BATCH, Pacing, prune
from tasks.retention.rules import DAY_S, Rule
from tasks.traffic.aggregate import aggregate
from tasks.traffic.ingest import ingest
from tasks.traffic.retention import TrafficRetention
from tests.toolkit.caddy_log import append, caddy_line
from tests.toolkit.factories import add_route
from tests.toolkit.traffic import NOW, count_rows, uncount
from workers.settings import retention as settings_retention
from workers.settings.retention import RetentionSettings

FAST = Pacing(pause_ms=0)


def no_sleep(_seconds: float) -> None:
    pass


def retention(**traffic) -> RetentionSettings:
    """The defaults (as `PROXYOS_RETENTION_*` unset gives them), traffic's changed by `traffic`."""
    defaults = settings_retention.load({})
    return replace(defaults, traffic=TrafficRetention(**traffic)) if traffic else defaults


def run_prune(engine, settings=None, pacing=FAST, now=NOW):
    return prune(engine, (settings or retention()).rules(), now=now, pacing=pacing, sleep=no_sleep)


def test_every_area_declares_its_rules_with_the_issue_defaults():
    names = [r.name for r in retention().rules()]
    assert names == [
        "access_log older than 7 days (counted rows only)",
        "access_log beyond the newest 1000 per route (counted rows only)",
        "traffic_metrics 1m buckets older than 90 days",
        "traffic_rollups 1h buckets older than 400 days",
        "health_checks beyond the newest 100 per route_id",
        "health_checks older than 30 days",
        "stream_health_checks beyond the newest 100 per stream_id",
        "stream_health_checks older than 30 days",
        "task_runs older than 30 days",
    ]
    changed = [r.name for r in retention(access_log_per_route=0, metrics_days={"1m": 1, "1h": 2, "1d": 3}).rules()]
    assert not [name for name in changed if name.startswith("access_log beyond")]  # 0: no cap
    assert "traffic_rollups 1d buckets older than 3 days" in changed


def test_prune_never_deletes_a_row_that_is_not_aggregated(any_engine, log_path):
    add_route(any_engine, "a.example.com", id="r0")
    old = NOW - 10 * DAY_S
    append(log_path, "".join(caddy_line("a.example.com", old + i, uri=f"/{i}") for i in range(30)))
    append(log_path, "".join(caddy_line("a.example.com", NOW - 60, uri="/new") for _ in range(5)))
    ingest(any_engine, log_path)
    uncount(any_engine)  # a backlog the aggregate job counts

    def stop_after_first(event, number):
        if event == "committed" and number == 1:
            raise KeyboardInterrupt  # the job stops after its first batch

    with pytest.raises(KeyboardInterrupt):
        aggregate(any_engine, batch_rows=12, on_batch=stop_after_first)
    with write_transaction(any_engine) as conn:  # ProxyOS's own old row: no seq, counted by it
        conn.execute(access_log.insert().values(id="legacy", route_id="r0", recorded_at=old))
    summary = run_prune(any_engine)
    assert summary["by_rule"]["access_log older than 7 days (counted rows only)"] == 13
    with any_engine.connect() as conn:
        left = conn.execute(sa.select(access_log.c.seq).order_by(access_log.c.seq)).scalars().all()
    assert left == list(range(13, 36))  # seq 1..12 counted and old: gone; the rest kept
    aggregate(any_engine)
    run_prune(any_engine)
    with any_engine.connect() as conn:
        assert conn.execute(sa.select(access_log.c.path)).scalars().all() == ["/new"] * 5


def test_a_per_route_cap_keeps_the_newest_counted_rows(engine, log_path):
    add_route(engine, "a.example.com", id="r0")
    add_route(engine, "b.example.com", id="r1")
    append(log_path, "".join(caddy_line("a.example.com", NOW - 100 + i) for i in range(50)))
    append(log_path, "".join(caddy_line("b.example.com", NOW - 100 + i) for i in range(5)))
    ingest(engine, log_path, keep_per_route=0)
    run_prune(engine, retention(access_log_per_route=20))
    with engine.connect() as conn:
        per_route = dict(conn.execute(
            sa.select(access_log.c.route_id, sa.func.count()).group_by(access_log.c.route_id)
        ).all())
        oldest_a = conn.execute(sa.select(sa.func.min(access_log.c.recorded_at))
                                .where(access_log.c.route_id == "r0")).scalar()
    assert per_route == {"r0": 20, "r1": 5}
    assert oldest_a == NOW - 100 + 30


def _checks(engine, route: str, ages_days: list[float]) -> None:
    with write_transaction(engine) as conn:
        conn.execute(health_checks.insert(), [
            {"id": f"{route}-{i}", "route_id": route, "checked_at": int(NOW - age * DAY_S),
             "overall_status": "healthy"}
            for i, age in enumerate(ages_days)
        ])


def test_health_checks_keep_the_newest_100_per_route_and_nothing_older_than_30_days(any_engine):
    add_route(any_engine, "busy.example.com", id="busy")
    add_route(any_engine, "quiet.example.com", id="quiet")
    _checks(any_engine, "busy", [i / 100 for i in range(150)] + [31 + i for i in range(20)])
    _checks(any_engine, "quiet", [i for i in range(40)])  # 0..39 days old
    run_prune(any_engine)
    with any_engine.connect() as conn:
        rows = conn.execute(sa.select(health_checks.c.route_id, health_checks.c.checked_at)).all()
    busy = sorted(t for r, t in rows if r == "busy")
    quiet = sorted(t for r, t in rows if r == "quiet")
    assert len(busy) == 100 and busy[0] == int(NOW - 0.99 * DAY_S)
    assert len(quiet) == 31 and min(quiet) == NOW - 30 * DAY_S  # 0..30 days old


def test_a_rule_on_a_table_that_does_not_exist_is_skipped(engine):
    missing = Rule("nothing older than a day", "no_such_table", "checked_at", max_age_s=DAY_S)
    summary = prune(engine, [missing], now=NOW, pacing=FAST, sleep=no_sleep)
    assert summary["deleted"] == 0
    assert summary["skipped"] == ["nothing older than a day: no table no_such_table"]


def test_metrics_and_task_runs_follow_their_own_ages(any_engine):
    def metric(size: str, age_days: float) -> dict:
        ts = int((NOW - age_days * DAY_S) * 1000)
        return {"id": f"{size}-{age_days}", "route_id": "r0", "bucket": size, "bucket_ts": ts}

    with write_transaction(any_engine) as conn:
        conn.execute(traffic_metrics.insert(), [metric("1m", 89), metric("1m", 91)])
        conn.execute(traffic_rollups.insert(), [metric("1h", 399), metric("1h", 401), metric("1d", 5000)])
        conn.execute(task_runs.insert(), [
            {"id": "new", "job": "x", "status": "ok", "started_at": NOW - 29 * DAY_S},
            {"id": "old", "job": "x", "status": "ok", "started_at": NOW - 31 * DAY_S},
            {"id": "stuck", "job": "x", "status": "running", "started_at": NOW - 31 * DAY_S},
        ])
    run_prune(any_engine)
    with any_engine.connect() as conn:
        assert list(conn.execute(sa.select(traffic_metrics.c.id)).scalars()) == ["1m-89"]
        assert sorted(conn.execute(sa.select(traffic_rollups.c.id)).scalars()) == ["1d-5000", "1h-399"]
        assert sorted(conn.execute(sa.select(task_runs.c.id)).scalars()) == ["new", "stuck"]


def bulk_old_rows(engine, count: int, seq_from: int = 1) -> None:
    """`count` counted access_log rows about ten days old, in time order (as ingest writes
    them), written straight into the file."""
    conn = sqlite3.connect(sqlite_path(engine), isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO access_log (id, route_id, status_code, latency_ms, bytes_out, recorded_at,"
        " seq, latency_bin) VALUES (?, ?, 200, 12, 100, ?, ?, 15)",
        ((f"old{i:09d}", f"r{i % 50}", NOW - 10 * DAY_S + i // 12, seq_from + i)
         for i in range(count)),
    )
    conn.execute("INSERT OR REPLACE INTO traffic_state VALUES ('ingest_seq', ?)", (seq_from + count - 1,))
    conn.execute("INSERT OR REPLACE INTO traffic_state VALUES ('aggregated_seq', ?)", (seq_from + count - 1,))
    conn.execute("COMMIT")
    conn.close()


def deleted_per_statement(engine) -> list[int]:
    """Filled with the row count of every DELETE the engine runs from now on."""
    sizes = []

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _seen(conn, cursor, statement, params, context, executemany):
        if statement.startswith("DELETE"):
            sizes.append(cursor.rowcount)

    return sizes


def test_each_write_transaction_deletes_at_most_5000_rows_and_the_wal_is_truncated(engine):
    bulk_old_rows(engine, 23_000)
    sizes = deleted_per_statement(engine)

    summary = run_prune(engine, pacing=Pacing(batch=9999, pause_ms=0, target_ms=10_000, abort_ms=10_000))
    assert summary["deleted"] == 23_000 == sum(sizes)
    assert max(sizes) == 5000
    assert summary["wal_checkpoint"]["busy"] == 0
    wal = Path(str(sqlite_path(engine)) + "-wal")
    assert wal.stat().st_size == 0


def test_a_batch_running_past_its_time_is_rolled_back_and_done_again_smaller(engine):
    """Every batch above the smallest runs out of time at once here: each is rolled back
    and halved, down to MIN_BATCH rows, which is never interrupted, so the prune ends
    with every old row deleted once and nothing else."""
    bulk_old_rows(engine, 3_000)
    sizes = deleted_per_statement(engine)

    summary = run_prune(engine, pacing=Pacing(pause_ms=0, abort_ms=0))
    assert summary["deleted"] == 3_000 == sum(sizes)
    assert summary["interrupted_batches"] >= 4  # 1000, 500, 250, 125 at least
    assert set(sizes) <= {MIN_BATCH, 0}
    with engine.connect() as conn:  # the pooled connection no longer interrupts anything
        assert conn.execute(sa.select(sa.func.count()).select_from(access_log)).scalar() == 0
        long_query = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) " \
            "SELECT count(*) FROM n"
        assert conn.execute(sa.text(long_query)).scalar() == 200_000


WRITER = Path(__file__).with_name("steady_writer.py")


def test_a_concurrent_writer_keeps_writing_during_a_prune_of_a_million_rows(engine, record_property):
    bulk_old_rows(engine, 1_000_000)
    writer = subprocess.Popen([sys.executable, str(WRITER), str(sqlite_path(engine))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        summary = prune(engine, retention().rules(), now=NOW, pacing=Pacing())
    finally:
        out, _ = writer.communicate("", timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    record_property("writer_max_wait_ms", result["max_wait_ms"])
    record_property("prune_longest_batch_ms", summary["longest_batch_ms"])
    print(f"\nprune of 1,000,000 rows: {summary['batches']} batches, longest "
          f"{summary['longest_batch_ms']} ms, {summary['wal_restarts']} WAL restart(s); writer: {result}")
    assert summary["deleted"] == 1_000_000
    assert count_rows(engine, access_log) == 0
    assert result["errors"] == 0 and result["writes"] > 0
    assert count_rows(engine, audit_log) == result["writes"]
