"""The traffic jobs: ingest (every 5 s), aggregate (every minute), prune (hourly)."""

from __future__ import annotations

import sqlalchemy as sa

from tasks.outcome import NothingToDo
from tasks.retention.prune import prune
from tasks.traffic.aggregate import aggregate, nothing_to_count, pending
from tasks.traffic.ingest import ingest, nothing_new
from tasks.traffic.progress import ingest_progress

from ..registry import Job, JobContext, render_pairs
from ..settings import retention as settings_retention
from ..settings import traffic as settings_traffic


def _run_ingest(ctx: JobContext, _options: dict) -> dict:
    s = ctx.settings.area(settings_traffic.load)
    summary = ingest(ctx.engine, s.access_log, batch_lines=s.ingest_batch, clock=ctx.clock,
                     keep_per_route=s.keep_per_route, limits=s.ingest_limits)
    if not (summary["batches"] or summary["counted"] or summary["trimmed"] or summary.get("lost")):
        raise NothingToDo(f"no new lines in {s.access_log}", summary)
    return summary


def _nothing_to_ingest(ctx: JobContext) -> str | None:
    s = ctx.settings.area(settings_traffic.load)
    return nothing_new(ctx.engine, s.access_log, s.keep_per_route)


def _run_aggregate(ctx: JobContext, _options: dict) -> dict:
    s = ctx.settings.area(settings_traffic.load)
    summary = aggregate(ctx.engine, batch_rows=s.aggregate_batch, clock=ctx.clock)
    if not summary["rows"]:
        raise NothingToDo("no rows left to count (ingest counts as it goes)", summary)
    return summary


def _run_prune(ctx: JobContext, _options: dict) -> dict:
    s = ctx.settings.area(settings_retention.load)
    summary = prune(ctx.engine, s.rules(), now=ctx.clock(), pacing=s.pacing)
    if not summary["deleted"] and not summary.get("skipped"):
        raise NothingToDo("no rows past the retention rules", summary)
    return summary


def _ingest_status(ctx: JobContext) -> dict:
    return ingest_progress(ctx.engine, ctx.settings.area(settings_traffic.load).access_log)


def _aggregate_status(ctx: JobContext) -> dict:
    try:
        watermark, newest = pending(ctx.engine)
    except sa.exc.DBAPIError:  # pragma: no cover - schema not migrated yet
        return {}
    return {"aggregated_seq": watermark, "newest_seq": newest, "pending_rows": newest - watermark}


def _check_settings(env) -> None:
    """The traffic area's settings and the retention's, which it applies (every traffic
    job refuses to start on a bad one, as before retention was an area of its own)."""
    settings_traffic.load(env)
    settings_retention.load(env)


JOBS = [
    Job(
        name="ingest",
        help="Read new lines of Caddy's JSON access log (PROXYOS_ACCESS_LOG) into access_log, count them "
        "into the traffic_metrics minutes, and keep each route's newest rows.",
        run=_run_ingest,
        nothing_to_do=_nothing_to_ingest,
        every=5.0,
        lease_seconds=30.0,
        example="PROXYOS_ACCESS_LOG=/data/proxyos/access.log proxyos-worker run-once ingest",
        status=_ingest_status,
        check_settings=_check_settings,
        render=render_pairs,
    ),
    Job(
        name="aggregate",
        help="Count access_log rows not counted yet (a backlog; ingest counts as it goes) into the "
        "traffic_metrics 1m and traffic_rollups 1h/1d buckets, exactly once.",
        run=_run_aggregate,
        nothing_to_do=lambda ctx: nothing_to_count(ctx.engine),
        every=60.0,
        lease_seconds=30.0,
        example="proxyos-worker run-once aggregate --json",
        status=_aggregate_status,
        check_settings=_check_settings,
        render=render_pairs,
    ),
    Job(
        name="prune",
        help="Delete old rows by the retention rules (PROXYOS_RETENTION_*), in short batches.",
        run=_run_prune,
        every=3600.0,
        lease_seconds=60.0,  # renewed every 20 s while a run lasts; a killed run's lease lapses soon
        example="PROXYOS_RETENTION_ACCESS_LOG_DAYS=3 proxyos-worker run-once prune",
        check_settings=_check_settings,
        render=render_pairs,
    ),
]
