"""What `proxyos-worker status --json` prints and `GET /v1/status` answers: each periodic
job's schedule and last and next run, the queue depth, the database and its schema
revision, the job selection, other writers seen, and each area's summary."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.engine import Engine

from db.engine import describe_url
from db.migrate import status as migration_status
from tasks.other_writers import detect

from .job_records import periodic_jobs
from .other_writers import watched_tables
from .queue import JobQueue
from .registry import JobContext


def report(ctx: JobContext, engine: Engine, queue: JobQueue) -> dict[str, Any]:
    """The report, read through `engine` (the one `ctx` uses) and `queue`."""
    settings = ctx.settings
    revision = migration_status(engine)
    now = time.time()
    sections = {}
    selection = settings.jobs
    enabled = {job.name for job in queue.jobs.values() if selection.allows(job.name)}
    with engine.connect() as conn:
        have_tables = revision.current is not None and not revision.pending
        jobs = periodic_jobs(conn if have_tables else None, queue.jobs.values(), enabled, now)
    for job in queue.jobs.values():
        if job.status and have_tables:
            sections[job.name] = dict(job.status(ctx))
    return {
        "database": describe_url(engine),
        "schema": {"current": revision.current, "head": revision.head, "pending": revision.pending},
        "queue": {"location": settings.queue.describe(), "kind": settings.queue.kind, **queue.depth()},
        "jobs": jobs,
        "job_selection": {"PROXYOS_JOBS": selection.spec, "disabled": sorted(selection.disabled)},
        "other_writers": [
            w.as_dict() for w in (detect(engine, watched_tables(selection), now) if have_tables else [])
        ],
        **sections,
    }
