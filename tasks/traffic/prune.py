"""Deleting by the retention rules without blocking anyone.

Each write transaction deletes at most `batch` rows (5,000 by default and at most), and
shrinks the batch when one took longer than `target_ms`, so the write lock is held for
milliseconds; between batches the job pauses `pause_ms`, long enough for a waiting
writer's busy handler to get its turn. After a large prune on SQLite the WAL is
checkpointed (TRUNCATE), so the WAL file does not stay large.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import is_sqlite, write_transaction

from .retention import Rule

log = logging.getLogger("proxyos.traffic.prune")

MAX_BATCH = 5000


@dataclass(frozen=True)
class Pacing:
    batch: int = MAX_BATCH
    pause_ms: float = 20.0
    target_ms: float = 25.0
    checkpoint_rows: int = 10_000  # checkpoint the WAL after deleting at least this many


class Deleter:
    """Runs batched DELETEs, adapting the batch size to the time each one takes."""

    def __init__(self, engine: Engine, pacing: Pacing, sleep: Callable[[float], None]) -> None:
        self.engine = engine
        self.pacing = pacing
        self.sleep = sleep
        self.batch = min(pacing.batch, MAX_BATCH)
        self.key = "rowid" if is_sqlite(engine) else "id"
        self.batches = 0
        self.longest_batch_ms = 0.0

    def delete(self, table: str, where: str, params: dict) -> int:
        """Delete every row of `table` meeting `where`, batch by batch."""
        total = 0
        while True:
            sql = (
                f"DELETE FROM {table} WHERE {self.key} IN "
                f"(SELECT {self.key} FROM {table} WHERE {where} LIMIT {self.batch})"
            )
            if self.batches:
                self.sleep(self.pacing.pause_ms / 1000)
            started = time.perf_counter()
            with write_transaction(self.engine) as conn:
                deleted = conn.execute(sa.text(sql), params).rowcount
            took_ms = (time.perf_counter() - started) * 1000
            self.batches += 1
            self.longest_batch_ms = max(self.longest_batch_ms, took_ms)
            total += deleted
            asked = self.batch
            self._adapt(took_ms, deleted)
            if deleted < asked:
                return total

    def _adapt(self, took_ms: float, deleted: int) -> None:
        if deleted <= 0:
            return
        target = self.pacing.target_ms
        if took_ms > target:
            self.batch = max(100, int(self.batch * target / took_ms))
        elif took_ms < target / 2:
            self.batch = min(self.pacing.batch, MAX_BATCH, self.batch * 2)


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
    with deleter.engine.connect() as conn:
        crowded = [
            row[0]
            for row in conn.execute(sa.text(
                f"SELECT {group} FROM {table} GROUP BY {group} HAVING count(*) > :keep"
            ), {"keep": rule.keep})
        ]
    total = 0
    for value in crowded:
        with deleter.engine.connect() as conn:
            bound = conn.execute(sa.text(
                f"SELECT {column} FROM {table} WHERE {group} = :g "
                f"ORDER BY {column} DESC LIMIT 1 OFFSET :skip"
            ), {"g": value, "skip": rule.keep - 1}).scalar()
        if bound is None:
            continue
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
    deleter = Deleter(engine, pacing, sleep)
    deleted: dict[str, int] = {}
    skipped: list[str] = []
    for rule in rules:
        if rule.table not in tables:
            skipped.append(f"{rule.name}: no table {rule.table}")
            continue
        if rule.keep is not None:
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
        result = checkpoint(engine)
        if result is not None:
            summary["wal_checkpoint"] = {"busy": result[0], "frames": result[1]}
    if total:
        log.info("traffic prune: deleted %d row(s) in %d batch(es)", total, deleter.batches)
    return summary
