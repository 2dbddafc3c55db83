"""Cumulative totals of the finished runs (`task_run_totals`): per job and status, the
runs, and a histogram of their durations (cumulative `le_<ms>` buckets, the timed runs
and the sum of their milliseconds), with the newest finish.

`add` is called by whatever records a run's outcome in `task_runs`, inside the same
transaction, so each finished run is added once; retention prunes `task_runs`, never
these rows, so counts read from here only grow. `read` costs one row per (job, status).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import RUN_DURATION_BOUNDS_MS, task_run_totals
from .sql import driver_mark

FINISHED = ("ok", "error", "skipped")
_BUCKETS = tuple(f"le_{bound}" for bound in RUN_DURATION_BOUNDS_MS)
_SUMMED = ("runs", "timed", "duration_ms_sum", *_BUCKETS)


def _delta(runs: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list]:
    """{(job, status): [runs, timed, duration_ms_sum, le_..., last_finished_at]}"""
    found: dict[tuple[str, str], list] = {}
    for run in runs:
        status = run.get("status")
        if status not in FINISHED or not run.get("job"):
            continue
        row = found.setdefault((run["job"], status), [0] * len(_SUMMED) + [None])
        row[0] += 1
        duration = run.get("duration_ms")
        if duration is not None:
            row[1] += 1
            row[2] += int(duration)
            for i, bound in enumerate(RUN_DURATION_BOUNDS_MS):
                if duration <= bound:
                    row[3 + i] += 1
        finished = run.get("finished_at")
        if finished is not None and (row[-1] is None or finished > row[-1]):
            row[-1] = finished
    return found


def add(conn: Connection, runs: Iterable[dict[str, Any]]) -> None:
    """Add finished runs (dicts with job, status, duration_ms, finished_at; a run still
    `running` is left out) to the totals, in the caller's transaction."""
    delta = _delta(runs)
    if not delta:
        return
    mark = driver_mark(conn)
    columns = ("job", "status", *_SUMMED, "last_finished_at")
    added = ", ".join(f"{name} = task_run_totals.{name} + excluded.{name}" for name in _SUMMED)
    newest = ("CASE WHEN task_run_totals.last_finished_at IS NULL"
              " OR excluded.last_finished_at > task_run_totals.last_finished_at"
              " THEN excluded.last_finished_at ELSE task_run_totals.last_finished_at END")
    conn.exec_driver_sql(
        f"INSERT INTO task_run_totals ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        f" ON CONFLICT (job, status) DO UPDATE SET {added}, last_finished_at = {newest}",
        [(job, status, *values) for (job, status), values in sorted(delta.items())],
    )


def read(conn: Connection) -> list[sa.Row]:
    """Every (job, status) row: bounded by the jobs, not by the history."""
    return conn.execute(sa.select(task_run_totals).order_by(task_run_totals.c.job, task_run_totals.c.status)).all()
