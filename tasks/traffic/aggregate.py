"""The aggregate job: `access_log` rows into `traffic_metrics` buckets, exactly once.

Rows are numbered by the ingest job (`access_log.seq`, handed out in commit order). A
watermark in `traffic_state` says every row up to it has been counted. A run takes the
rows above the watermark in batches (an index range scan: the cost grows with the new
rows only), groups each batch by route, minute and latency bin, adds the result into the
1m buckets and, from those 1m sums, into the 1h and 1d buckets, and moves the watermark,
all in one short write transaction. So:

- a crash before the commit leaves nothing; a re-run does the batch again;
- a row is counted once in one bucket of each size, however often the job runs;
- a late row (its `recorded_at` in a bucket already written) has a new seq like any
  other, and is added to its old bucket, correcting it;
- the newest, still-open buckets are brought up to date on every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.tables import routes
from db.tables_traffic import traffic_metrics

from . import histogram, state
from .buckets import COUNTERS, MINUTE_MS, SIZES, metric_id

DEFAULT_BATCH_ROWS = 20_000
_ID_CHUNK = 500

BatchHook = Callable[[str, int], None]

_GROUPED = """
SELECT route_id, recorded_at / 60 AS minute, latency_bin,
       count(*),
       sum(coalesce(bytes_out, 0)),
       sum(CASE WHEN status_code >= 500 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code BETWEEN 300 AND 399 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code BETWEEN 400 AND 499 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code BETWEEN 500 AND 599 THEN 1 ELSE 0 END),
       sum(coalesce(latency_ms, 0)),
       max(recorded_at)
FROM access_log
WHERE seq > :low AND seq <= :high
GROUP BY route_id, recorded_at / 60, latency_bin
"""


@dataclass
class Delta:
    """What one batch adds: per (size, bucket_ts, route) the COUNTERS then a histogram
    {bin: count} (a list), and the newest `recorded_at` per route."""

    buckets: dict[tuple[str, int, str], list]
    last_seen: dict[str, int]
    rows: int


def _grouped_rows(conn: Connection, low: int, high: int) -> list[tuple]:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = _GROUPED.replace(":low", mark).replace(":high", mark)
    return conn.exec_driver_sql(sql, (low, high)).fetchall()


def group_batch(conn: Connection, low: int, high: int) -> Delta:
    """Group the rows with low < seq <= high by route, minute and latency bin (in SQL),
    then sum them into 1m buckets and roll those up into 1h and 1d buckets."""
    minutes: dict[tuple[int, str], list] = {}
    last_seen: dict[str, int] = {}
    rows = 0
    for route, minute, bin_, n, b, e, s2, s3, s4, s5, lat, newest in _grouped_rows(conn, low, high):
        rows += n
        acc = minutes.get((minute, route))
        if acc is None:
            minutes[(minute, route)] = [n, b, e, s2, s3, s4, s5, lat, {} if bin_ is None else {bin_: n}]
        else:
            acc[0] += n
            acc[1] += b
            acc[2] += e
            acc[3] += s2
            acc[4] += s3
            acc[5] += s4
            acc[6] += s5
            acc[7] += lat
            if bin_ is not None:
                acc[8][bin_] = n  # one group row per (route, minute, bin)
        if newest > last_seen.get(route, -1):
            last_seen[route] = newest
    buckets: dict[tuple[str, int, str], list] = {}
    hour_ms, day_ms = SIZES["1h"], SIZES["1d"]
    for (minute, route), acc in minutes.items():
        ts = minute * MINUTE_MS
        buckets[("1m", ts, route)] = acc
        for key in (("1h", ts - ts % hour_ms, route), ("1d", ts - ts % day_ms, route)):
            rolled = buckets.get(key)  # rolled up from the 1m sums
            if rolled is None:
                buckets[key] = [*acc[:8], dict(acc[8])]
            else:
                _add(rolled, acc)
    return Delta(buckets, last_seen, rows)


def _add(into: list, other: list) -> None:
    for i in range(8):
        into[i] += other[i]
    hist = into[8]
    for k, n in other[8].items():
        hist[k] = hist.get(k, 0) + n


def _existing(conn: Connection, ids: list[str]) -> dict[str, tuple]:
    cols = [traffic_metrics.c[name] for name in COUNTERS]
    found: dict[str, tuple] = {}
    for i in range(0, len(ids), _ID_CHUNK):
        chunk = ids[i : i + _ID_CHUNK]
        query = sa.select(traffic_metrics.c.id, *cols, traffic_metrics.c.latency_hist).where(
            traffic_metrics.c.id.in_(chunk)
        )
        for row in conn.execute(query):
            found[row[0]] = tuple(row[1:])
    return found


def _upsert_sql(conn: Connection) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    columns = ("id", "route_id", "bucket", "bucket_ts", *COUNTERS, "latency_hist")
    updates = ", ".join(f"{name} = excluded.{name}" for name in (*COUNTERS, "latency_hist"))
    return (
        f"INSERT INTO traffic_metrics ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


def write_delta(conn: Connection, delta: Delta) -> int:
    """Add `delta` into traffic_metrics; returns the number of bucket rows written."""
    ids = {key: metric_id(*key) for key in delta.buckets}
    old = _existing(conn, list(ids.values()))
    params = []
    for key, acc in delta.buckets.items():
        size, ts, route = key
        row_id = ids[key]
        before = old.get(row_id)
        if before is not None:
            acc = [*acc[:8], dict(acc[8])]
            _add(acc, [*(int(v or 0) for v in before[:8]), histogram.decode(before[8])])
        params.append((row_id, route, size, ts, *acc[:8], histogram.encode(acc[8])))
    if params:
        conn.exec_driver_sql(_upsert_sql(conn), params)
    _touch_routes(conn, delta.last_seen.items())
    return len(params)


def _touch_routes(conn: Connection, last_seen: Iterable[tuple[str, int]]) -> None:
    newer = sa.case(
        (sa.or_(routes.c.last_traffic_at.is_(None), routes.c.last_traffic_at < sa.bindparam("ts")),
         sa.bindparam("ts")),
        else_=routes.c.last_traffic_at,
    )
    params = [{"rid": route, "ts": ts} for route, ts in last_seen]
    if params:
        stmt = sa.update(routes).where(routes.c.id == sa.bindparam("rid"))
        conn.execute(stmt.values(last_traffic_at=newer), params)


def pending(engine: Engine) -> tuple[int, int]:
    """(watermark, newest seq): the rows in between are not yet counted."""
    with engine.connect() as conn:
        return state.read(conn, state.AGGREGATED_SEQ), state.read(conn, state.INGEST_SEQ)


def aggregate(
    engine: Engine,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_batch: BatchHook | None = None,
    clock: Callable[[], float] = time.time,
) -> dict:
    """Count every row above the watermark; returns a summary."""
    with write_transaction(engine) as conn:
        state.ensure(conn, state.INGEST_SEQ)
        state.ensure(conn, state.AGGREGATED_SEQ)
    watermark, newest = pending(engine)
    started = clock()
    rows = buckets = batches = 0
    while watermark < newest:
        high = min(watermark + batch_rows, newest)
        with engine.connect() as conn:  # the rows below `newest` are committed and final
            delta = group_batch(conn, watermark, high)
        with write_transaction(engine) as conn:
            state.compare_and_set(conn, state.AGGREGATED_SEQ, watermark, high)
            buckets += write_delta(conn, delta)
            if on_batch:
                on_batch("before_commit", batches + 1)
        batches += 1
        rows += delta.rows
        watermark = high
        if on_batch:
            on_batch("committed", batches)
    return {
        "rows": rows,
        "batches": batches,
        "buckets_written": buckets,
        "watermark": watermark,
        "seconds": round(clock() - started, 3),
    }
