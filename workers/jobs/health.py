"""Health checks: the periodic dispatcher, the batches it fans out, and `health` on demand.

- `health-dispatch` (every 5 s, one at a time cluster-wide): claims the routes and streams
  due in the next few seconds and enqueues them as `health-batch` tasks (ids and due
  times only), so several consumers share them when the queue is Redis.
- `health-batch` (hidden): probes its ids concurrently, each at its due time.
- `health` (on demand): checks every eligible route and stream now, or the one named.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tasks.health.batch import BatchReport, run_batch
from tasks.health.schedule import claim_due, nothing_due, split
from tasks.health.settings import MIN_INTERVAL
from tasks.health.status import summary
from tasks.health.store import load_routes, load_streams, route_ineligible_reason
from tasks.outcome import NothingToDo, Skipped

from ..registry import Job, JobContext, Option
from ..settings import health as health_settings

SHOWN_RESULTS = 200  # results listed in a run's summary, problems first; the rest are counted


def _dispatch(ctx: JobContext, _options: Mapping[str, Any]) -> dict:
    settings = ctx.settings.area(health_settings.load)
    claimed = claim_due(ctx.engine, settings, ctx.clock())
    if not claimed:
        raise NothingToDo("no route or stream due")
    batches = split(claimed, settings.batch_size)
    for batch in batches:
        ctx.enqueue(
            "health-batch",
            routes=[d.target_id for d in batch if d.kind == "route"],
            route_due=[round(d.due_at, 3) for d in batch if d.kind == "route"],
            streams=[d.target_id for d in batch if d.kind == "stream"],
            stream_due=[round(d.due_at, 3) for d in batch if d.kind == "stream"],
        )
    return {"due": len(claimed), "batches": len(batches)}


def _pairs(options: Mapping[str, Any], ids: str, due: str) -> list[tuple[str, float | None]]:
    targets, times = list(options.get(ids) or []), list(options.get(due) or [])
    if len(times) != len(targets):
        times = [None] * len(targets)
    return list(zip(targets, times, strict=True))


def _batch(ctx: JobContext, options: Mapping[str, Any]) -> dict:
    settings = ctx.settings.area(health_settings.load)
    report = run_batch(
        ctx.engine,
        settings,
        _pairs(options, "routes", "route_due"),
        _pairs(options, "streams", "stream_due"),
        clock=ctx.clock,
    )
    return _summarise(ctx, report, listed=False)


def _on_demand(ctx: JobContext, options: Mapping[str, Any]) -> dict:
    settings = ctx.settings.area(health_settings.load)
    route_id, stream_id = options.get("route"), options.get("stream")
    if route_id and stream_id:
        raise ValueError("name either --route or --stream, not both")
    with ctx.engine.connect() as conn:
        if route_id:
            route_rows, stream_rows = load_routes(conn, [route_id]), []
            if not route_rows:
                raise ValueError(f"no route with id {route_id!r}")
            reason = route_ineligible_reason(route_rows[0])
            if reason:
                raise Skipped(f"route {route_id} is not checked: {reason}")
        elif stream_id:
            route_rows, stream_rows = [], load_streams(conn, [stream_id])
            if not stream_rows:
                raise ValueError(f"no stream with id {stream_id!r}")
            if not stream_rows[0]["enabled"]:
                raise Skipped(f"stream {stream_id} is not checked: the stream is disabled")
        else:
            route_rows, stream_rows = load_routes(conn, None), load_streams(conn, None)
    if not route_rows and not stream_rows:
        raise Skipped("no enabled route or stream has health checks")
    report = run_batch(
        ctx.engine, settings, route_rows=route_rows, stream_rows=stream_rows, clock=ctx.clock
    )
    return _summarise(ctx, report, listed=True)


def _summarise(ctx: JobContext, report: BatchReport, listed: bool) -> dict:
    if report.changes:
        ctx.nudge("alerts-evaluate")  # a state changed: an alert may fire or clear
    if report.write_errors:
        raise RuntimeError("; ".join(report.write_errors[:3]))
    late = report.lateness_ms()
    out: dict[str, Any] = {
        "checked": len(report.results),
        **report.counts(),
        "changes": len(report.changes),
    }
    if report.missing:
        out["gone"] = len(report.missing)
    if late:
        out["lateness_p50_ms"] = late[len(late) // 2]
        out["lateness_max_ms"] = late[-1]
    if listed:
        out["results"] = [
            {
                "kind": r.kind,
                "id": r.target_id,
                "name": r.name,
                "status": r.status,
                "status_code": r.status_code,
                "response_time_ms": r.response_time_ms,
                "error": r.error,
            }
            for r in sorted(report.results, key=_problems_first)[:SHOWN_RESULTS]
        ]
    return out


def _problems_first(result) -> tuple:
    """Routes before streams; within each, unhealthy, then degraded, then healthy, by name."""
    order = {"unhealthy": 0, "degraded": 1, "healthy": 2}
    return (result.kind, order.get(result.status, 3), result.name)


def render(result: Mapping[str, Any]) -> str:
    lines = [
        f"  checked {result.get('checked', 0)}: {result.get('healthy', 0)} healthy, "
        f"{result.get('degraded', 0)} degraded, {result.get('unhealthy', 0)} unhealthy; "
        f"{result.get('changes', 0)} status changes"
    ]
    shown = result.get("results") or []
    width = max([len(str(r["name"])) for r in shown] + [4])
    for r in shown:
        code = r["status_code"] if r["status_code"] is not None else "-"
        took = f"{r['response_time_ms']} ms" if r["response_time_ms"] is not None else "-"
        line = (
            f"  {r['kind']:<6} {str(r['name']):<{width}}  {r['status']:<9}  {code!s:>4}  {took:>8}"
        )
        if r["error"]:
            line += f"  {r['error']}"
        lines.append(line.rstrip())
    hidden = result.get("checked", 0) - len(shown)
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (see the health_checks table)")
    return "\n".join(lines)


def status(ctx: JobContext) -> dict:
    return summary(ctx.engine, time.time())


JOBS = [
    Job(
        name="health",
        help="Check every enabled route's upstreams and every stream now (or the one named "
        "with --route/--stream) and print the results.",
        run=_on_demand,
        options=(
            Option("--route", "check only this route (its id)", metavar="ID"),
            Option("--stream", "check only this stream (its id)", metavar="ID"),
        ),
        exclusive=False,
        example="proxyos-worker run-once health --route V1StGXR8_Z5jdHi6B-myT",
        status=status,
        check_settings=health_settings.load,
        render=render,
    ),
    Job(
        name="health-dispatch",
        help="Enqueue the health checks that are due, in batches.",
        run=_dispatch,
        nothing_to_do=lambda ctx: nothing_due(ctx.engine, ctx.settings.area(health_settings.load), ctx.clock()),
        every=MIN_INTERVAL,  # the dispatcher period the schedule assumes
        lease_seconds=60.0,
        check_settings=health_settings.load,
        hidden=True,
        feeds=("health-batch",),  # the checks it claims are done only there
    ),
    Job(
        name="health-batch",
        help="Probe one batch of routes and streams at their due times.",
        run=_batch,
        exclusive=False,
        check_settings=health_settings.load,
        hidden=True,
    ),
]
