"""`proxyos-worker status [--json]`."""

from __future__ import annotations

from db.engine import create_engine, sqlite_path
from db.files import require_existing

from ..consumer import build_queue
from ..registry import JobContext
from ..status_report import report
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


def collect(settings) -> dict:
    require_existing(sqlite_path(settings.database_url))  # status never creates a database
    engine = create_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms)
    ctx = JobContext(settings, engine=engine)
    try:
        queue, _ = build_queue(settings, context=ctx, create=False)
        return report(ctx, engine, queue)
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
