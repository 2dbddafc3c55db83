"""Deleting by the retention rules without blocking anyone.

Each write transaction deletes at most `batch` rows (5,000 by default and at most). The
batch size follows the measured delete rate so that a transaction holds the write lock
for about `target_ms`; between batches the job pauses `pause_ms`.

Why 25 ms and 15 ms: a writer that finds the database locked waits in SQLite's busy
handler, which retries after sleeping 1, 2, 5, 10, 15, 20, 25 ... ms (retries at 1, 3, 8,
18, 33, 53 ms). If no transaction holds the lock longer than about 30 ms, a waiting
writer's retry at 33 ms at the latest finds it free, provided the lock stays free long
enough for that retry to land: the widest gap between its retries up to then is 15 ms.

On SQLite the WAL is checkpointed during each pause, made to start again from its
beginning once it holds more than a limit, and truncated after a large prune (see
`db.wal`), so it does not stay large.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import is_sqlite
from db.wal import WAL_LIMIT_MB, WalKeeper, truncate_wal

from .rules import Rule

log = logging.getLogger("proxyos.retention.prune")

MAX_BATCH = 5000
FIRST_BATCH = 1000  # rows of the first batch, which measures the delete rate
MIN_BATCH = 100  # never interrupted, so the prune always moves on
PROGRESS_STEPS = 1000  # SQLite VM steps between two looks at a batch's clock


@dataclass(frozen=True)
class Pacing:
    batch: int = MAX_BATCH
    pause_ms: float = 15.0
    target_ms: float = 25.0
    # A batch still deleting after this long (a stall: the machine busy elsewhere, the
    # kernel writing back) is interrupted and rolled back, freeing the lock in time for a
    # waiting writer's retry at 33 ms; it is done again as two smaller ones.
    abort_ms: float = 28.0
    checkpoint_rows: int = 10_000  # truncate the WAL after deleting at least this many
    wal_limit_mb: float = WAL_LIMIT_MB  # restart the WAL once it holds more, mid-prune
    cache_mb: int = 64  # SQLite page cache of the pruning connection, while it prunes


class Deleter:
    """Runs batched DELETEs on one connection, sizing each batch from the delete rate
    measured so far (a smoothed rows/ms), so that it takes about `target_ms`."""

    def __init__(self, engine: Engine, pacing: Pacing, sleep: Callable[[float], None]) -> None:
        self.engine = engine
        self.pacing = pacing
        self.sleep = sleep
        self.limit = max(1, min(pacing.batch, MAX_BATCH))
        self.batch = min(self.limit, FIRST_BATCH)
        self.rate: float | None = None  # rows per ms, smoothed
        self.sqlite = is_sqlite(engine)
        self.key = "rowid" if self.sqlite else "id"
        self.batches = 0
        self.interrupted = 0
        self.longest_batch_ms = 0.0
        self.conn: Connection | None = None
        self.wal = WalKeeper(engine, pacing.wal_limit_mb) if self.sqlite else None

    def __enter__(self) -> Deleter:
        self.conn = self.engine.connect()
        self.conn.execution_options(sqlite_begin="IMMEDIATE")
        if self.sqlite:
            # A batch dirties pages all over the table's indexes; with SQLite's default
            # 2 MB cache it would spill them to the WAL mid-transaction, holding the lock
            # several times longer. Restored on exit (the connection goes back to the pool).
            self.cache_size = self._raw("PRAGMA cache_size")[0][0]
            self._raw(f"PRAGMA cache_size = -{self.pacing.cache_mb * 1024}")
            self._raw("PRAGMA wal_autocheckpoint = 0")
            self.wal.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.sqlite:
                self.wal.__exit__(*exc)
                self._raw("PRAGMA wal_autocheckpoint = 1000")
                self._raw(f"PRAGMA cache_size = {int(self.cache_size)}")
        finally:
            self.conn.close()

    def _raw(self, sql: str):
        return self.conn.connection.dbapi_connection.execute(sql).fetchall()

    def read(self, sql: str, params: dict) -> list:
        with self.engine.connect() as conn:  # a plain read: no write lock
            return conn.execute(sa.text(sql), params).all()

    def delete(self, table: str, where: str, params: dict) -> int:
        """Delete every row of `table` meeting `where`, batch by batch."""
        total = 0
        while True:
            asked = self.batch
            sql = (
                f"DELETE FROM {table} WHERE {self.key} IN "
                f"(SELECT {self.key} FROM {table} WHERE {where} LIMIT {asked})"
            )
            started = time.perf_counter()
            try:
                with self.conn.begin(), self._bounded(started, asked):
                    deleted = self.conn.execute(sa.text(sql), params).rowcount
            except sa.exc.OperationalError as exc:
                if not _was_interrupted(exc):
                    raise
                self._retry_smaller(asked)
                continue
            took_ms = (time.perf_counter() - started) * 1000
            self.batches += 1
            self.longest_batch_ms = max(self.longest_batch_ms, took_ms)
            total += deleted
            if deleted == asked:  # a partial batch says little about the rate
                self._adapt(took_ms, deleted)
            if deleted:
                self._pause()
            if deleted < asked:
                return total

    @contextmanager
    def _bounded(self, started: float, rows: int) -> Iterator[None]:
        """On SQLite, interrupt the statement once the batch has run `abort_ms`."""
        if not self.sqlite or rows <= MIN_BATCH:
            yield
            return
        deadline = started + self.pacing.abort_ms / 1000
        raw = self.conn.connection.dbapi_connection
        raw.set_progress_handler(lambda: time.perf_counter() > deadline, PROGRESS_STEPS)
        try:
            yield
        finally:
            raw.set_progress_handler(None, PROGRESS_STEPS)

    def _retry_smaller(self, asked: int) -> None:
        """A batch ran past `abort_ms` and was rolled back: half as many rows next."""
        self.interrupted += 1
        self.batch = max(MIN_BATCH, asked // 2)
        log.debug("prune: a batch of %d rows ran past %g ms; rolled back, retried smaller",
                  asked, self.pacing.abort_ms)
        self._pause()

    def _pause(self) -> None:
        """Leave the write lock free for `pause_ms`; on SQLite, tend the WAL meanwhile."""
        pause = self.pacing.pause_ms / 1000
        started = time.perf_counter()
        frames = self.wal.copy() if self.wal is not None else 0
        left = pause - (time.perf_counter() - started)
        if left > 0:
            self.sleep(left)
        if self.wal is not None and self.wal.prepare_reuse(frames):
            self.sleep(pause)  # that held the write lock: a whole pause after it

    def _adapt(self, took_ms: float, deleted: int) -> None:
        rate = deleted / max(took_ms, 0.1)
        # One slow batch (the machine busy elsewhere) moves the estimate, not all of it.
        self.rate = rate if self.rate is None else 0.6 * self.rate + 0.4 * rate
        wanted = int(self.rate * self.pacing.target_ms)
        self.batch = max(MIN_BATCH, min(self.limit, wanted, self.batch * 2))


def _was_interrupted(exc: sa.exc.OperationalError) -> bool:
    return "interrupted" in str(exc.orig)


def _existing_tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _where(rule: Rule, extra: str) -> str:
    parts = [p for p in (extra, rule.condition) if p]
    return " AND ".join(f"({p})" for p in parts)


def _apply_age(deleter: Deleter, rule: Rule, now: float) -> int:
    cutoff = int((now - rule.max_age_s) * rule.scale)
    where = _where(rule, f"{rule.time_column} < :cutoff")
    return deleter.delete(rule.table, where, {"cutoff": cutoff})


def _apply_keep(deleter: Deleter, rule: Rule) -> int:
    group, column, table = rule.group_column, rule.time_column, rule.table
    crowded = deleter.read(
        f"SELECT {group} FROM {table} GROUP BY {group} HAVING count(*) > :keep", {"keep": rule.keep}
    )
    total = 0
    for (value,) in crowded:
        found = deleter.read(
            f"SELECT {column} FROM {table} WHERE {group} = :g ORDER BY {column} DESC LIMIT 1 OFFSET :skip",
            {"g": value, "skip": rule.keep - 1},
        )
        if not found:
            continue
        bound = found[0][0]
        # rows sharing the keep-th newest time are all kept
        where = _where(rule, f"{group} = :g AND {column} < :bound")
        total += deleter.delete(table, where, {"g": value, "bound": bound})
    return total


def prune(
    engine: Engine,
    rules: list[Rule],
    *,
    now: float | None = None,
    pacing: Pacing = Pacing(),
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Apply every rule; returns rows deleted per rule and the pacing figures."""
    now = time.time() if now is None else now
    tables = _existing_tables(engine)
    deleted: dict[str, int] = {}
    skipped: list[str] = []
    with Deleter(engine, pacing, sleep) as deleter:
        for rule in rules:
            if rule.table not in tables:
                skipped.append(f"{rule.name}: no table {rule.table}")
            elif rule.keep is not None:
                deleted[rule.name] = _apply_keep(deleter, rule)
            else:
                deleted[rule.name] = _apply_age(deleter, rule, now)
    total = sum(deleted.values())
    summary: dict = {
        "deleted": total,
        "by_rule": deleted,
        "batches": deleter.batches,
        "longest_batch_ms": round(deleter.longest_batch_ms, 1),
        "interrupted_batches": deleter.interrupted,
    }
    if skipped:
        summary["skipped"] = skipped
    if deleter.wal is not None:
        summary["wal_restarts"] = deleter.wal.restarts
        summary["longest_wal_restart_ms"] = round(deleter.wal.longest_restart_ms, 1)
    if total >= pacing.checkpoint_rows and is_sqlite(engine):
        started = time.perf_counter()
        busy, frames, _ = truncate_wal(engine)
        took_ms = round((time.perf_counter() - started) * 1000, 1)
        summary["wal_checkpoint"] = {"busy": busy, "frames": frames, "ms": took_ms}
    if total:
        log.info("prune: deleted %d row(s) in %d batch(es)", total, deleter.batches)
    return summary
