"""Writing `task_runs`: synchronously, or buffered by one writer thread in the consumer.

In the consumer, hundreds of short tasks a second each recording a start and a finish
would queue for SQLite's single write lock. The buffered writer collects those records
and writes them every `interval` seconds in one short transaction; a run that starts and
finishes within one interval becomes a single INSERT. A run that lasts longer shows as
`running` within one interval of its start; a periodic run's start is held back for
`DEFER_S` more, so that one which finds nothing to do can be `discard`ed unwritten.
What a killed process had not yet written (at most `interval` seconds of history, and
`DEFER_S` of a periodic run's start) is lost; its leases and the jobs' own state,
which live in the database, are not.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db import run_totals
from db.engine import write_transaction
from db.leases import process_alive
from db.schema import task_runs
from db.sql import driver_mark

log = logging.getLogger("proxyos.history")

FINISH_COLUMNS = ("status", "finished_at", "duration_ms", "error", "summary")
ROW_COLUMNS = tuple(column.name for column in task_runs.columns)


def _write(conn: Connection, new: list[dict[str, Any]], finished: list[dict[str, Any]]) -> None:
    """Plain DBAPI executemany: a tenth of the cost of SQLAlchemy's per-row parameter
    handling, which matters at thousands of runs a second."""
    mark = driver_mark(conn)
    if new:
        conn.exec_driver_sql(
            f"INSERT INTO task_runs ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join([mark] * len(ROW_COLUMNS))})",
            [tuple(row.get(name) for name in ROW_COLUMNS) for row in new],
        )
    if finished:
        assignments = ", ".join(f"{name} = {mark}" for name in FINISH_COLUMNS)
        conn.exec_driver_sql(
            f"UPDATE task_runs SET {assignments} WHERE id = {mark}",
            [tuple(row[name] for name in FINISH_COLUMNS) + (row["run_id"],) for row in finished],
        )
    # The cumulative totals that /metrics reads (task_runs itself is pruned): each run is
    # added once, when its outcome is written, in this same transaction.
    run_totals.add(conn, [*new, *_with_jobs(conn, finished)])


def _with_jobs(conn: Connection, finished: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished records with their runs' job names (the ones whose row exists)."""
    jobs: dict[str, str] = {}
    ids = [row["run_id"] for row in finished]
    for start in range(0, len(ids), 500):
        query = sa.select(task_runs.c.id, task_runs.c.job).where(task_runs.c.id.in_(ids[start:start + 500]))
        jobs.update((run_id, job) for run_id, job in conn.execute(query))
    return [{**row, "job": jobs[row["run_id"]]} for row in finished if row["run_id"] in jobs]
MAX_PENDING = 100_000  # beyond this, with the database unreachable, the oldest are dropped
DEFER_S = 1.0  # how long a deferred start stays unwritten, waiting to be finished or discarded


class RunHistory:
    def __init__(self, engine: Engine, buffered: bool = False, interval: float = 0.05) -> None:
        self.engine = engine
        self.buffered = buffered
        self.interval = interval
        self._lock = threading.Lock()
        self._new: dict[str, dict[str, Any]] = {}  # rows not yet in the table
        self._finished: dict[str, dict[str, Any]] = {}  # rows in the table, now finished
        self._not_before: dict[str, float] = {}  # deferred starts: run id -> when to write it
        self._wake = threading.Event()  # set only by close()
        self._arrived = threading.Event()  # a record came: the writer sleeps until one does
        self._stopped = False
        self._thread: threading.Thread | None = None

    def started(self, row: dict[str, Any], defer: bool = False) -> None:
        """A run began (or, with its finish columns set, a run that is already over).
        `defer`: while buffered, not written before DEFER_S unless it finishes first."""
        if not self.buffered:
            with write_transaction(self.engine) as conn:
                _write(conn, [row], [])
            return
        with self._lock:
            self._new[row["id"]] = row
            if defer:
                self._not_before[row["id"]] = time.monotonic() + DEFER_S
        self._arrived.set()
        self._ensure_writer()

    def discard(self, run_id: str) -> bool:
        """Forget a run whose start is not written yet; False when it already is."""
        with self._lock:
            self._not_before.pop(run_id, None)
            return self._new.pop(run_id, None) is not None

    def finished(self, run_id: str, **values: Any) -> None:
        if not self.buffered:
            with write_transaction(self.engine) as conn:
                _write(conn, [], [{"run_id": run_id, **values}])
            return
        with self._lock:
            if run_id in self._new:  # started and finished within one interval
                self._new[run_id].update(values)
                self._not_before.pop(run_id, None)
            else:
                self._finished[run_id] = {"run_id": run_id, **values}
            if len(self._new) + len(self._finished) > MAX_PENDING:
                self._drop_oldest()
        self._arrived.set()

    def flush(self, everything: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            held = {} if everything else {
                run_id: self._new[run_id] for run_id, when in self._not_before.items() if when > now
            }
            new = [row for run_id, row in self._new.items() if run_id not in held]
            finished = list(self._finished.values())
            self._new, self._finished = held, {}
            self._not_before = {run_id: when for run_id, when in self._not_before.items() if run_id in held}
        if not new and not finished:
            return
        try:
            with write_transaction(self.engine) as conn:
                _write(conn, new, finished)
        except Exception:
            with self._lock:  # keep them for the next attempt, newer records winning
                self._new = {row["id"]: row for row in new} | self._new
                self._finished = {row["run_id"]: row for row in finished} | self._finished
            raise

    def close(self) -> None:
        self._stopped = True
        self._wake.set()
        self._arrived.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self.buffered:
            self.flush(everything=True)

    def _ensure_writer(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="proxyos-history", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self._arrived.wait(self._until_due())  # idle: no wake-ups until a record comes
            self._arrived.clear()
            self._wake.wait(self.interval)  # gather one interval's records into one transaction
            try:
                self.flush()
            except Exception as exc:  # the database is busy or down: try again shortly
                log.warning("could not write run history yet: %s", exc)
                self._wake.wait(1.0)

    def _until_due(self) -> float | None:
        """Seconds until a record is due to be written: 0 for one waiting, the time left
        for a held-back start, None for none at all."""
        with self._lock:
            if self._finished or len(self._new) > len(self._not_before):
                return 0.0
            if self._not_before:
                return max(min(self._not_before.values()) - time.monotonic(), 0.0)
            return None

    def _drop_oldest(self) -> None:
        oldest = next(iter(self._finished or self._new))
        self._finished.pop(oldest, None) or self._new.pop(oldest, None)
        self._not_before.pop(oldest, None)
        log.warning("run history backlog is full; dropped the record of run %s", oldest)


def close_orphaned_runs(engine: Engine, hostname: str, now: float) -> int:
    """Mark `running` rows left by dead processes of this host as errors.

    A worker killed mid-task leaves its run `running` forever; at start-up a consumer
    closes those whose process (host:pid in `task_runs.host`) no longer exists, so
    `status` and the run history tell the truth. Returns how many it closed.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(task_runs.c.id, task_runs.c.job, task_runs.c.host, task_runs.c.started_at).where(
                task_runs.c.status == "running", task_runs.c.host.like(f"{hostname}:%")
            )
        ).all()
    dead = [row for row in rows if not process_alive(int(row.host.rsplit(":", 1)[1]))]
    if not dead:
        return 0
    with write_transaction(engine) as conn:
        for row in dead:
            duration_ms = int((now - row.started_at) * 1000)
            closed = conn.execute(
                task_runs.update()
                .where(task_runs.c.id == row.id, task_runs.c.status == "running")
                .values(
                    status="error",
                    finished_at=now,
                    duration_ms=duration_ms,
                    error=f"the worker process ({row.host}) ended before this run finished",
                )
            ).rowcount
            if closed:
                run_totals.add(conn, [{"job": row.job, "status": "error", "duration_ms": duration_ms,
                                       "finished_at": now}])
    return len(dead)
