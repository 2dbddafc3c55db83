"""`proxyos-worker status [--json]`."""

from __future__ import annotations

import time

import sqlalchemy as sa

from db.engine import create_engine, describe_url, sqlite_path
from db.files import require_existing
from db.migrate import status as migration_status
from db.schema import job_schedule, task_runs
from tasks.other_writers import detect

from ..consumer import build_queue
from ..other_writers import watched_tables
from ..registry import JobContext
from .common import add_command, format_duration, format_time, print_json, print_table


def register(commands) -> None:
    parser = add_command(
        commands,
        "status",
        help="what each periodic job did last, when it runs next, and the queue depth",
        description="For each periodic job: its schedule, its last recorded run (time, status, "
        "duration, error), when it last looked and found nothing to do (such runs leave no "
        "task_runs row), and its next run, or `disabled` when PROXYOS_JOBS leaves it out "
        "here; then the queue depth, the database location and its schema revision, the jobs "
        "PROXYOS_JOBS disables, any other writer (one of ProxyOS's own loops) seen in the last "
        "hour in a table an enabled job writes, with what to set, and each area's own summary "
        "(e.g. health).",
        example="proxyos-worker status --json | jq .jobs",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=handle)


def _running_since(conn) -> dict[str, float]:
    rows = conn.execute(
        sa.select(task_runs.c.job, sa.func.max(task_runs.c.started_at))
        .where(task_runs.c.status == "running")
        .group_by(task_runs.c.job)
    ).all()
    return {job: started for job, started in rows}


def _last_idle(tick: float | None, last_started: float | None, running_since: float | None) -> float | None:
    """When the job last looked and found nothing to do: its newest tick, if no run was
    recorded from it (a periodic run with nothing to do leaves no row) and none is going."""
    if not tick:
        return None
    if (last_started and last_started >= tick) or (running_since and running_since >= tick):
        return None
    return tick


def _last_runs(conn) -> dict[str, dict]:
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


def collect(settings) -> dict:
    require_existing(sqlite_path(settings.database_url))  # status never creates a database
    engine = create_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms)
    ctx = JobContext(settings, engine=engine)
    try:
        revision = migration_status(engine)
        queue, _ = build_queue(settings, context=ctx, create=False)
        now = time.time()
        jobs = []
        sections = {}
        with engine.connect() as conn:
            have_tables = revision.current is not None and not revision.pending
            last = _last_runs(conn) if have_tables else {}
            running = _running_since(conn) if have_tables else {}
            ticks = (
                {r.job: r.last_tick for r in conn.execute(sa.select(job_schedule))} if have_tables else {}
            )
        selection = settings.jobs
        for job in queue.jobs.values():
            if job.every:
                run = last.get(job.name, {})
                tick = ticks.get(job.name)
                enabled = selection.allows(job.name)
                jobs.append({
                    "job": job.name,
                    "every_s": job.every,
                    "enabled": enabled,
                    "last_started_at": run.get("started_at"),
                    "last_status": run.get("status"),
                    "last_duration_ms": run.get("duration_ms"),
                    "last_error": run.get("error"),
                    "last_idle_at": _last_idle(tick, run.get("started_at"), running.get(job.name)),
                    "next_run_at": (max(now, tick + job.every) if tick else now) if enabled else None,
                })
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
    finally:
        ctx.close()


def handle(args, settings) -> int:
    report = collect(settings)
    if args.json:
        print_json(report)
        return 0
    schema = report["schema"]
    pending = f", {len(schema['pending'])} pending (run `proxyos-worker migrate`)" if schema["pending"] else ""
    print(f"database: {report['database']} (schema {schema['current'] or 'none'}, head {schema['head']}{pending})")
    queue = report["queue"]
    depth = f"{queue['pending']} pending, {queue['scheduled']} scheduled"
    print(f"queue:    {queue['location']} ({queue['kind']}): {depth}")
    print()
    print_table(
        ["job", "every", "last run", "status", "took", "found nothing at", "next run", "error"],
        [
            [
                j["job"], format_duration(j["every_s"]), format_time(j["last_started_at"]),
                j["last_status"], format_duration((j["last_duration_ms"] or 0) / 1000) if j["last_status"] else "-",
                format_time(j["last_idle_at"]) if j["last_idle_at"] else "-",
                format_time(j["next_run_at"]) if j["enabled"] else "disabled", (j["last_error"] or "")[:80],
            ]
            for j in report["jobs"]
        ],
    )
    selection = report["job_selection"]
    if selection["disabled"]:
        print(f"\ndisabled by PROXYOS_JOBS={selection['PROXYOS_JOBS']}: {', '.join(selection['disabled'])}")
    print("\nother writers:")
    for writer in report["other_writers"]:
        print(f"  {writer['table']}: {writer['message']}")
    if not report["other_writers"]:
        print("  none seen in the last hour")
    for name, section in report.items():
        if name in ("database", "schema", "queue", "jobs", "job_selection", "other_writers"):
            continue
        print(f"\n{name}:")
        for key, value in section.items():
            print(f"  {key}: {value}")
    return 0
