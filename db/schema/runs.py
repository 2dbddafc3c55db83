"""The workers' own bookkeeping (migration 0002): the run history, the periodic
scheduler's ticks and the job leases."""

from __future__ import annotations

from sqlalchemy import Float, Index, Table

from .columns import INT, c, metadata

task_runs = Table(
    "task_runs",
    metadata,
    c("id", pk=True),
    c("job", nn=True),
    c("task_id"),
    c("status", nn=True),  # running | ok | error | skipped
    c("started_at", Float, nn=True),  # seconds since the epoch, sub-second precision
    c("finished_at", Float),
    c("duration_ms", INT),
    c("error"),
    c("summary"),  # JSON object
    c("host"),
    Index("ix_task_runs_job_started", "job", "started_at"),
    Index("ix_task_runs_task_id", "task_id"),  # migration 0009: a task's runs (GET /v1/runs/{task_id})
)

job_schedule = Table(
    "job_schedule",
    metadata,
    c("job", pk=True),
    c("last_tick", INT, nn=True, default=0),  # the newest tick (epoch seconds) enqueued
    c("updated_at", Float),
)

job_leases = Table(
    "job_leases",
    metadata,
    c("job", pk=True),
    c("owner", nn=True),
    c("expires_at", Float, nn=True),
)
