"""Jobs run in this process: a context on a test database, the runs it records, and a
run held in progress."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from db.schema import task_runs
from workers import config
from workers.registry import Job, JobContext
from workers.runner import run_job


def job_context(url: str, tmp_path: Path) -> JobContext:
    """A context for running jobs in this process on the database at `url`."""
    return JobContext(config.load({"PROXYOS_DATABASE_URL": url, "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db"}))


def job_runs(engine: sa.Engine, job: str) -> list[dict]:
    """The `task_runs` rows of `job`, oldest first."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(task_runs).where(task_runs.c.job == job).order_by(task_runs.c.started_at)).mappings()]


@contextmanager
def run_in_progress(ctx: JobContext, job: str) -> Iterator[float]:
    """A run of the exclusive job `job` (its lease held), in a thread, until the block
    ends; yields when it began. The run ends, and the thread is joined, on the way out."""
    started, release = threading.Event(), threading.Event()

    def hold(_ctx, _options):
        started.set()
        if not release.wait(60):
            raise TimeoutError("the held run was never released")
        return {}

    holder = threading.Thread(target=run_job, args=(ctx, Job(job, "", run=hold)))
    holder.start()
    try:
        if not started.wait(30):
            raise TimeoutError("the held run did not start")
        yield time.time()
    finally:
        release.set()
        holder.join()
