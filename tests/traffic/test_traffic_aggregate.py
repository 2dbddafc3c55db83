"""Aggregation: exact totals, idempotent re-runs, crashes, late rows (SQLite and PostgreSQL).

Ingest counts the rows it writes as it goes; the aggregate job's own batches are tested
on a backlog (`uncount`), as after an upgrade."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import access_log, routes, traffic_metrics, traffic_rollups
from tasks.traffic import aggregate_sql
from tasks.traffic.aggregate import aggregate, pending
from tasks.traffic.ingest import ingest
from tests.toolkit.caddy_log import append, caddy_line, random_lines
from tests.toolkit.factories import add_route
from tests.toolkit.traffic import NOW, recount, stored, uncount

HOSTS = ["a.example.com", "b.example.com", "c.example.com"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def loaded(any_engine, log_path):
    for i, host in enumerate(HOSTS):
        add_route(any_engine, host, id=f"r{i}")
    append(log_path, "".join(random_lines(random.Random(7), HOSTS, 3000, NOW - 3 * 3600, 3 * 3600)))
    ingest(any_engine, log_path, batch_lines=1000, keep_per_route=0)
    uncount(any_engine)
    return any_engine


class Crash(Exception):
    pass


def test_every_row_is_counted_once_in_one_bucket_of_each_size(loaded):
    summary = aggregate(loaded, batch_rows=700)
    assert summary["rows"] == 3000 and summary["batches"] == 5
    assert stored(loaded) == recount(loaded)
    with loaded.connect() as conn:
        per_size = {table.name: dict(conn.execute(
            sa.select(table.c.bucket, sa.func.sum(table.c.requests)).group_by(table.c.bucket)
        ).all()) for table in (traffic_metrics, traffic_rollups)}
    # ProxyOS's readers sum every traffic_metrics row: only minutes belong there
    assert per_size == {"traffic_metrics": {"1m": 3000}, "traffic_rollups": {"1h": 3000, "1d": 3000}}


def test_running_twice_changes_nothing(loaded):
    aggregate(loaded)
    first = stored(loaded)
    assert aggregate(loaded)["rows"] == 0
    assert stored(loaded) == first == recount(loaded)


@pytest.mark.parametrize("event", ["before_commit", "committed"])
def test_a_crash_between_batches_then_a_rerun_gives_exact_totals(loaded, event):
    def crash(ev, number):
        if ev == event and number == 3:
            raise Crash()

    with pytest.raises(Crash):
        aggregate(loaded, batch_rows=400, on_batch=crash)
    watermark, newest = pending(loaded)
    assert watermark == (800 if event == "before_commit" else 1200) and newest == 3000
    aggregate(loaded, batch_rows=400)
    assert stored(loaded) == recount(loaded)


def test_late_rows_correct_their_already_aggregated_buckets(loaded, log_path):
    aggregate(loaded)
    before = stored(loaded)
    late_ts = NOW - 2 * 3600 + 30  # inside a minute, hour and day already written
    append(log_path, caddy_line("a.example.com", late_ts, status=502, duration=3.0, size=10)
           + caddy_line("a.example.com", late_ts + 1, status=200, duration=0.001, size=5))
    assert ingest(loaded, log_path, keep_per_route=0)["counted"] == 2  # counted as they are written
    assert aggregate(loaded)["rows"] == 0
    after = stored(loaded)
    assert after == recount(loaded)
    minute = (late_ts - late_ts % 60) * 1000
    old, new = before[("r0", "1m", minute)][0], after[("r0", "1m", minute)][0]
    assert new["requests"] == old["requests"] + 2
    assert new["errors"] == old["errors"] + 1 and new["bytes"] == old["bytes"] + 15
    assert new["latency_sum_ms"] == old["latency_sum_ms"] + 3001


def test_the_open_bucket_is_up_to_date_after_every_ingest_run(any_engine, log_path):
    add_route(any_engine, "a.example.com", id="r0")
    for i in range(3):
        append(log_path, caddy_line("a.example.com", NOW + i))
        ingest(any_engine, log_path)  # no aggregate run in between
        got = stored(any_engine)
        for size, width in (("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000)):
            ts = NOW * 1000 - NOW * 1000 % width
            assert got[("r0", size, ts)][0]["requests"] == i + 1
    with any_engine.connect() as conn:
        assert conn.execute(sa.select(routes.c.last_traffic_at)).scalar() == NOW + 2


def test_rows_proxyos_wrote_itself_are_not_counted_again(any_engine, log_path):
    add_route(any_engine, "a.example.com", id="r0")
    with write_transaction(any_engine) as conn:  # a row from before the workers: no seq
        conn.execute(access_log.insert().values(id="legacy", route_id="r0", status_code=200,
                                                latency_ms=5, bytes_out=1, recorded_at=NOW - 1))
    append(log_path, caddy_line("a.example.com", NOW))
    ingest(any_engine, log_path)
    aggregate(any_engine)
    assert stored(any_engine)[("r0", "1m", NOW * 1000)][0]["requests"] == 1


def test_last_traffic_at_only_moves_forward(loaded):
    with write_transaction(loaded) as conn:
        conn.execute(sa.update(routes).where(routes.c.id == "r1").values(last_traffic_at=NOW + 999))
    aggregate(loaded)
    with loaded.connect() as conn:
        seen = dict(conn.execute(sa.select(routes.c.id, routes.c.last_traffic_at)).all())
    assert seen["r1"] == NOW + 999
    assert NOW - 60 <= seen["r0"] < NOW


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    from db.engine import create_engine
    from tasks.traffic.aggregate import aggregate
    url, event, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def crash(ev, n):
        if ev == event and n == number:
            os._exit(9)  # the process dies: no rollback, no clean-up
    aggregate(create_engine(url), batch_rows=450, on_batch=crash)
    sys.exit(0)
""")


@pytest.mark.parametrize("event", ["before_commit", "committed"])
def test_a_killed_process_then_a_rerun_gives_exact_totals(engine, sqlite_url, log_path, event):
    for i, host in enumerate(HOSTS):
        add_route(engine, host, id=f"r{i}")
    append(log_path, "".join(random_lines(random.Random(3), HOSTS, 2000, NOW - 7200, 7200)))
    ingest(engine, log_path, keep_per_route=0)
    uncount(engine)
    done = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, sqlite_url, event, "2"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    assert pending(engine)[0] == (450 if event == "before_commit" else 900)
    aggregate(engine)
    assert stored(engine) == recount(engine)


def test_a_batch_reads_only_the_new_rows_through_the_seq_index(engine):
    with engine.connect() as conn:
        for statement in aggregate_sql.CREATE_DELTA:
            conn.exec_driver_sql(statement)
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + aggregate_sql.FILL_DELTA.replace(":low", "1").replace(":high", "2")
        ))
    assert "USING INDEX ix_access_log_seq (seq>? AND seq<?)" in plan
