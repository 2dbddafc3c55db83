"""What the database says of each periodic job: its last finished run (`task_runs`), the
run going on, its newest tick (`job_schedule`), and from those, when it last looked and
found nothing to do (such a run leaves no row)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import job_schedule, task_runs

from .registry import Job


def _running_since(conn: Connection) -> dict[str, float]:
    rows = conn.execute(
        sa.select(task_runs.c.job, sa.func.max(task_runs.c.started_at))
        .where(task_runs.c.status == "running")
        .group_by(task_runs.c.job)
    ).all()
    return {job: started for job, started in rows}


def _last_runs(conn: Connection) -> dict[str, dict]:
    newest = (
        sa.select(task_runs.c.job, sa.func.max(task_runs.c.started_at).label("started_at"))
        .where(task_runs.c.status != "running")
        .group_by(task_runs.c.job)
        .subquery()
    )
    rows = conn.execute(
        sa.select(task_runs).join(
            newest, sa.and_(task_runs.c.job == newest.c.job, task_runs.c.started_at == newest.c.started_at)
        )
    ).mappings()
    return {row["job"]: dict(row) for row in rows}


def _last_idle(tick: float | None, last_started: float | None, running_since: float | None) -> float | None:
    """When the job last looked and found nothing to do: its newest tick, if no run was
    recorded from it (a periodic run with nothing to do leaves no row) and none is going."""
    if not tick:
        return None
    if (last_started and last_started >= tick) or (running_since and running_since >= tick):
        return None
    return tick


def periodic_jobs(conn: Connection | None, jobs: Iterable[Job], enabled: set[str], now: float) -> list[dict[str, Any]]:
    """One record per periodic job: schedule, last run, last idle look, next run (None when
    disabled). `conn` None: the tables do not exist yet, nothing has run."""
    last = _last_runs(conn) if conn is not None else {}
    running = _running_since(conn) if conn is not None else {}
    ticks = {r.job: r.last_tick for r in conn.execute(sa.select(job_schedule))} if conn is not None else {}
    records = []
    for job in jobs:
        if not job.every:
            continue
        run, tick = last.get(job.name, {}), ticks.get(job.name)
        records.append({
            "job": job.name,
            "every_s": job.every,
            "enabled": job.name in enabled,
            "last_started_at": run.get("started_at"),
            "last_status": run.get("status"),
            "last_duration_ms": run.get("duration_ms"),
            "last_error": run.get("error"),
            "last_idle_at": _last_idle(tick, run.get("started_at"), running.get(job.name)),
            "next_run_at": (max(now, tick + job.every) if tick else now) if job.name in enabled else None,
        })
    return records
