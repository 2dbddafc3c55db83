"""The aggregate job: `access_log` rows into `traffic_metrics` buckets, exactly once.

Rows are numbered by the ingest job (`access_log.seq`, handed out in commit order). A
watermark in `traffic_state` says every row up to it has been counted. A run takes the
rows above the watermark in batches (an index range scan: the cost grows with the new
rows only), groups each batch by route, minute and latency bin into a temporary table,
then, in one short write transaction, adds that delta into the 1m buckets of
`traffic_metrics` and, rolled up from the same per-minute sums, into the 1h and 1d
buckets of `traffic_rollups` (counters added, histograms merged: in SQL, or on SQLite by
a function this connection registers), and moves the watermark. So:

- a crash before the commit leaves nothing; a re-run does the batch again;
- a row is counted once in one bucket of each size, however often the job runs;
- a late row (its `recorded_at` in a bucket already written) has a new seq like any
  other, and is added to its old bucket, correcting it;
- the newest, still-open buckets are brought up to date on every run.

The ingest job counts the rows it writes in the same transaction (`count_in_transaction`)
whenever the watermark is caught up, so the open minute is fresh after every ingest run;
this job then only catches up on a backlog (after an upgrade, or a failed count).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import sqlite_cache, write_transaction
from db.sql import driver_mark

from . import aggregate_sql as sql
from . import histogram, state
from .buckets import MINUTE_MS, SIZES

DEFAULT_BATCH_ROWS = 50_000
CACHE_MB = 64  # SQLite page cache while aggregating (the default 2 MB spills mid-batch)

BatchHook = Callable[[str, int], None]


class Counter:
    """Counts `access_log` rows into the buckets on one connection (the temporary delta
    tables are per connection). `group` and `add` run in the caller's transaction: the
    ingest job calls both inside the write transaction that inserts the rows, the
    aggregate job groups without the write lock and adds in a short write transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.upserts = [sql.upsert_bucket(self.dialect, size, SIZES[size] // MINUTE_MS) for size in SIZES]
        if self.dialect == "sqlite":
            raw = conn.connection.dbapi_connection
            raw.create_function(sql.HIST_ADD, 2, histogram.add_encoded, deterministic=True)
        for statement in sql.CREATE_DELTA:
            self.conn.execute(sa.text(statement))

    def group(self, low: int, high: int, unstored: Sequence[tuple] = ()) -> int:
        """Group the rows with low < seq <= high, and the `unstored` rows (route_id,
        recorded_at, status_code, latency_ms, bytes_out, latency_bin: counted, never
        stored), into the delta tables (on SQLite the temp database is the connection's
        own: no lock on the shared file). Returns the number of rows grouped."""
        for statement in sql.CLEAR_DELTA:
            self.conn.execute(sa.text(statement))
        fill = sql.FILL_DELTA
        if unstored:
            self._stage(unstored)
            fill = sql.FILL_DELTA_WITH_UNSTORED
        self.conn.execute(sa.text(fill), {"low": low, "high": high})
        self.conn.execute(sa.text(sql.FILL_HOURS))
        return int(self.conn.execute(sa.text(sql.DELTA_ROWS)).scalar())

    def _stage(self, unstored: Sequence[tuple]) -> None:
        self.conn.execute(sa.text(sql.CREATE_UNSTORED))
        self.conn.execute(sa.text(sql.CLEAR_UNSTORED))
        self.conn.exec_driver_sql(sql.INSERT_UNSTORED.format(mark=driver_mark(self.conn)), list(unstored))

    def add(self, low: int, high: int) -> None:
        """Move the watermark from `low` to `high` (compare-and-set), add the grouped
        delta into every bucket size and each route's totals (`traffic_route_totals`,
        which retention never prunes) and bring `routes.last_traffic_at` forward."""
        state.compare_and_set(self.conn, state.AGGREGATED_SEQ, low, high)
        for statement in self.upserts:
            self.conn.execute(sa.text(statement))
        self.conn.execute(sa.text(sql.ADD_ROUTE_TOTALS))
        newest = self.conn.execute(sa.text(sql.NEWEST_PER_ROUTE)).all()
        if newest:
            params = [{"route": route, "ts": ts} for route, ts in newest]
            self.conn.execute(sa.text(sql.TOUCH_ROUTE), params)


def count_in_transaction(conn: Connection, low: int, high: int, unstored: Sequence[tuple] = ()) -> int:
    """Count the rows low < seq <= high, and the `unstored` ones (see `Counter.group`),
    inside the caller's write transaction, which must hold the watermark at `low`;
    returns the rows counted."""
    counter = Counter(conn)
    rows = counter.group(low, high, unstored)
    counter.add(low, high)
    return rows


class Batch:
    """The aggregate job's batches: grouped without the write lock, added with it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.conn.execution_options(sqlite_begin="DEFERRED")
        with self.conn.begin():
            self.counter = Counter(conn)

    def group(self, low: int, high: int) -> int:
        self.conn.execution_options(sqlite_begin="DEFERRED")
        with self.conn.begin():
            return self.counter.group(low, high)

    def apply(self, low: int, high: int, before_commit: Callable[[], None] | None) -> None:
        """Add the delta into every bucket size and move the watermark: one transaction."""
        self.conn.execution_options(sqlite_begin="IMMEDIATE")
        with self.conn.begin():
            self.counter.add(low, high)
            if before_commit:
                before_commit()


def pending(engine: Engine) -> tuple[int, int]:
    """(watermark, newest seq): the rows in between are not yet counted."""
    with engine.connect() as conn:
        return state.read(conn, state.AGGREGATED_SEQ), state.read(conn, state.INGEST_SEQ)


def nothing_to_count(engine: Engine) -> str | None:
    """Why an aggregate run would do nothing now (every row is counted), or None."""
    watermark, newest = pending(engine)
    return "no rows left to count (ingest counts as it goes)" if watermark >= newest else None


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
    rows = batches = 0
    with engine.connect() as conn, sqlite_cache(conn, CACHE_MB):
        batch = Batch(conn)
        while watermark < newest:
            high = min(watermark + batch_rows, newest)
            counted = batch.group(watermark, high)
            number = batches + 1
            if on_batch:
                on_batch("grouped", number)
            hook = (lambda n=number: on_batch("before_commit", n)) if on_batch else None
            try:
                batch.apply(watermark, high, hook)
            except state.ConcurrentChange:
                # The ingest job (or another aggregate run) counted rows meanwhile; they
                # are counted once, by it. Go on from where it left the watermark.
                watermark, newest = pending(engine)
                continue
            batches, rows, watermark = number, rows + counted, high
            if on_batch:
                on_batch("committed", batches)
    return {
        "rows": rows,
        "batches": batches,
        "watermark": watermark,
        "seconds": round(clock() - started, 3),
    }
