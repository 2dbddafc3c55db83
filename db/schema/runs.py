"""The workers' own bookkeeping (migration 0002): the run history, the periodic
scheduler's ticks and the job leases; and (migration 0010) the runs' cumulative totals."""

from __future__ import annotations

from sqlalchemy import Float, Index, Table

from .columns import BIG, INT, c, metadata

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

# Upper bounds (ms) of the run-duration histogram's buckets, kept cumulative: column
# `le_<ms>` counts the timed runs that took at most that long.
RUN_DURATION_BOUNDS_MS = (10, 100, 1_000, 10_000, 60_000, 300_000, 1_800_000)

# Every finished run per job and status since migration 0010 (seeded from the task_runs
# rows there were), added to in the transaction that records the outcome in task_runs;
# never pruned, so its counts only grow while task_runs is cut to 30 days.
task_run_totals = Table(
    "task_run_totals",
    metadata,
    c("job", pk=True),
    c("status", pk=True),  # ok | error | skipped
    c("runs", BIG, nn=True, default=0),
    c("timed", BIG, nn=True, default=0),  # runs with a duration: the histogram's count
    c("duration_ms_sum", BIG, nn=True, default=0),
    *(c(f"le_{bound}", BIG, nn=True, default=0) for bound in RUN_DURATION_BOUNDS_MS),
    c("last_finished_at", Float),
)
