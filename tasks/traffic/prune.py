"""Deleting by the retention rules without blocking anyone.

Each write transaction deletes at most `batch` rows (5,000 by default and at most): the
batch starts at 1,000, doubles while batches take under half of `target_ms` and shrinks
when one took longer, so the write lock is held for milliseconds; between batches the job
pauses `pause_ms`, long enough for a writer waiting in SQLite's busy handler (which
retries after 1, 2, 5, 10, 15, 20, 25 ms ...) to get its turn. After a large prune on SQLite the WAL is
checkpointed (TRUNCATE), so the WAL file does not stay large.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import is_sqlite

from .retention import Rule

log = logging.getLogger("proxyos.traffic.prune")

MAX_BATCH = 5000


@dataclass(frozen=True)
class Pacing:
    batch: int = MAX_BATCH
    pause_ms: float = 20.0
    target_ms: float = 25.0
    checkpoint_rows: int = 10_000  # checkpoint the WAL after deleting at least this many
    cache_mb: int = 64  # SQLite page cache of the pruning connection, while it prunes


class Deleter:
    """Runs batched DELETEs on one connection, adapting the batch size to the time each
    takes. On SQLite the WAL is checkpointed (PASSIVE: it never holds the write lock)
    during the pause after each batch, instead of automatically inside some later commit:
    that keeps the WAL short, and the checkpoint work out of the dashboard's commits."""

    def __init__(self, engine: Engine, pacing: Pacing, sleep: Callable[[float], None]) -> None:
        self.engine = engine
        self.pacing = pacing
        self.sleep = sleep
        self.limit = max(1, min(pacing.batch, MAX_BATCH))
        self.batch = min(self.limit, 1000)  # grows while batches stay short
        self.sqlite = is_sqlite(engine)
        self.key = "rowid" if self.sqlite else "id"
        self.batches = 0
        self.longest_batch_ms = 0.0
        self.conn: Connection | None = None

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
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.sqlite:
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
            sql = (
                f"DELETE FROM {table} WHERE {self.key} IN "
                f"(SELECT {self.key} FROM {table} WHERE {where} LIMIT {self.batch})"
            )
            started = time.perf_counter()
            with self.conn.begin():
                deleted = self.conn.execute(sa.text(sql), params).rowcount
            took_ms = (time.perf_counter() - started) * 1000
            self.batches += 1
            self.longest_batch_ms = max(self.longest_batch_ms, took_ms)
            total += deleted
            asked = self.batch
            self._adapt(took_ms, deleted)
            self._pause(deleted)
            if deleted < asked:
                return total

    def _pause(self, deleted: int) -> None:
        started = time.perf_counter()
        if self.sqlite and deleted:
            self._raw("PRAGMA wal_checkpoint(PASSIVE)")
        left = self.pacing.pause_ms / 1000 - (time.perf_counter() - started)
        if left > 0:
            self.sleep(left)

    def _adapt(self, took_ms: float, deleted: int) -> None:
        if deleted <= 0:
            return
        target = self.pacing.target_ms
        if took_ms > target:
            self.batch = max(100, int(self.batch * target / took_ms))
        elif took_ms < target / 2:
            self.batch = min(self.limit, self.batch * 2)


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


def checkpoint(engine: Engine) -> tuple[int, int, int] | None:
    """Fold the WAL into the database and truncate it (SQLite; None elsewhere).
    A PASSIVE pass first does the work without blocking writers."""
    if not is_sqlite(engine):
        return None
    raw = engine.raw_connection()
    try:
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
        row = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        raw.close()
    return tuple(row)


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
    }
    if skipped:
        summary["skipped"] = skipped
    if total >= pacing.checkpoint_rows:
        started = time.perf_counter()
        result = checkpoint(engine)
        if result is not None:
            took_ms = round((time.perf_counter() - started) * 1000, 1)
            summary["wal_checkpoint"] = {"busy": result[0], "frames": result[1], "ms": took_ms}
    if total:
        log.info("traffic prune: deleted %d row(s) in %d batch(es)", total, deleter.batches)
    return summary
