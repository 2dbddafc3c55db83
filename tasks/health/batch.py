"""Probe a batch of routes and streams concurrently, on the process's probing loop.

Each check waits for its due time (when it has one), then probes every upstream at once
under the batch's semaphore, so a dead upstream holds only its own slot and never delays
another check (its own route waits at most the timeout). Results are written as they
arrive, many per short transaction, from a worker thread so the loop keeps probing while
SQLite writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.engine import Engine

from .config import RouteCheck, StreamCheck, route_check, stream_check
from .loop import run as on_probing_loop
from .probe_http import insecure_context, new_session, probe_http
from .probe_socket import probe_tcp, probe_udp
from .schedule import fast_due
from .settings import HealthSettings
from .state import Change
from .store import load_routes, load_streams, write_results
from .verdict import DEGRADED, HEALTHY, UNHEALTHY, CheckResult, UpstreamResult, combine
from .writer import ResultWriter

log = logging.getLogger("proxyos.health")


@dataclass
class BatchReport:
    results: list[CheckResult] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ids that no longer exist
    write_errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {HEALTHY: 0, DEGRADED: 0, UNHEALTHY: 0}
        for result in self.results:
            counts[result.status] += 1
        return counts

    def lateness_ms(self) -> list[int]:
        return sorted(r.lateness_ms for r in self.results if r.lateness_ms is not None)


def run_batch(
    engine: Engine,
    settings: HealthSettings,
    routes: Sequence[tuple[str, float | None]] = (),
    streams: Sequence[tuple[str, float | None]] = (),
    *,
    clock: Callable[[], float] = time.time,
    route_rows: list[dict] | None = None,
    stream_rows: list[dict] | None = None,
) -> BatchReport:
    """Check these routes and streams, each at its due time (None: now), and record the
    results. Rows already loaded can be passed in (`route_rows`, `stream_rows`)."""
    due = {("route", i): d for i, d in routes} | {("stream", i): d for i, d in streams}
    with engine.connect() as conn:
        if route_rows is None:
            route_rows = load_routes(conn, [i for i, _ in routes])
        if stream_rows is None:
            stream_rows = load_streams(conn, [i for i, _ in streams])
    report = BatchReport()
    found = {("route", r["id"]) for r in route_rows} | {("stream", s["id"]) for s in stream_rows}
    report.missing = sorted(target_id for kind, target_id in due if (kind, target_id) not in found)
    checks: list[tuple[RouteCheck | StreamCheck, float | None]] = [
        (route_check(row, settings), due.get(("route", row["id"]))) for row in route_rows
    ] + [(stream_check(row, settings), due.get(("stream", row["id"]))) for row in stream_rows]
    checks.sort(key=lambda item: item[1] or 0.0)
    on_probing_loop(_run(engine, settings, checks, clock, report))
    return report


async def _run(
    engine: Engine, settings: HealthSettings, checks, clock, report: BatchReport
) -> None:
    writer = ResultWriter(
        lambda results: write_results(engine, results, settings.rise, settings.fall),
        max_rows=settings.write_rows,
        max_delay=settings.write_delay,
    )
    slots = asyncio.Semaphore(settings.concurrency)
    trusted, insecure = settings.trusted_context, insecure_context()
    writer.start()
    try:
        async with new_session(settings.concurrency) as session:

            async def one(check, due_at: float | None) -> None:
                if due_at is not None:
                    delay = due_at - clock()
                    if delay > 0:
                        await asyncio.sleep(delay)
                started, probing = clock(), Probing(slots, clock)
                try:
                    if isinstance(check, RouteCheck):
                        result = await _check_route(
                            session, check, probing, trusted, insecure, started
                        )
                    else:
                        result = await _check_stream(check, probing, settings, started)
                except Exception as exc:  # a bug must not sink the batch: record it, go on
                    log.exception("health: checking %s failed", _name(check))
                    result = _failed(check, started, f"check failed: {type(exc).__name__}: {exc}")
                if due_at is not None:  # behind schedule: until the first probe really began
                    began = min(probing.began, default=started)
                    result = replace(result, lateness_ms=max(0, int((began - due_at) * 1000)))
                ended, fast = clock(), settings.fast_for(check.interval)
                result = replace(
                    result,
                    ended_at=ended,
                    interval=check.interval,
                    recheck_at=fast_due(ended, check.interval, fast) if fast else None,
                )
                report.results.append(result)
                writer.add(result)

            await asyncio.gather(*(one(check, due_at) for check, due_at in checks))
    finally:
        await writer.close()
    report.changes.extend(writer.changes)
    report.write_errors.extend(writer.errors)


class Probing:
    """The batch's probe slots, and when each probe of one check got its slot."""

    def __init__(self, slots: asyncio.Semaphore, clock: Callable[[], float]) -> None:
        self.slots = slots
        self.clock = clock
        self.began: list[float] = []

    async def run(self, probe: Coroutine[Any, Any, UpstreamResult]) -> UpstreamResult:
        async with self.slots:
            self.began.append(self.clock())
            return await probe


def _name(check: RouteCheck | StreamCheck) -> str:
    return (
        f"route {check.route_id}" if isinstance(check, RouteCheck) else f"stream {check.stream_id}"
    )


def _failed(check: RouteCheck | StreamCheck, started: float, error: str | None) -> CheckResult:
    if isinstance(check, RouteCheck):
        return CheckResult("route", check.route_id, check.name, UNHEALTHY, started, error=error)
    return CheckResult(
        "stream",
        check.stream_id,
        check.name,
        UNHEALTHY,
        started,
        error=error,
        protocol=check.protocol,
    )


async def _check_route(
    session, check: RouteCheck, probing: Probing, trusted, insecure, started: float
) -> CheckResult:
    if check.problem:
        return _failed(check, started, check.problem)
    if check.kind == "tcp":
        probes = [probing.run(probe_tcp(t, check.timeout)) for t in check.targets]
    else:
        probes = [
            probing.run(probe_http(session, check, t, trusted, insecure)) for t in check.targets
        ]
    upstreams = tuple(await asyncio.gather(*probes))
    status, error = combine(upstreams)
    first = upstreams[0]
    return CheckResult(
        "route",
        check.route_id,
        check.name,
        status,
        started,
        error=error,
        status_code=first.status_code,
        response_time_ms=first.response_time_ms,
        body_matched=first.body_matched if check.body_regex is not None else None,
        upstreams=upstreams,
    )


async def _check_stream(
    check: StreamCheck, probing: Probing, settings: HealthSettings, started: float
) -> CheckResult:
    if check.problem or check.target is None:
        return _failed(check, started, check.problem)
    probes = []
    for protocol in check.protocols:
        if protocol == "tcp":
            probes.append(probing.run(probe_tcp(check.target, check.timeout)))
        else:
            probes.append(probing.run(probe_udp(check.target, check.timeout, settings.udp_wait)))
    upstreams = await asyncio.gather(*probes)
    labelled = tuple(
        UpstreamResult(f"{protocol} {u.label}", u.ok, u.response_time_ms, reason=u.reason)
        for protocol, u in zip(check.protocols, upstreams, strict=True)
    )
    status, error = combine(labelled)
    times = [u.response_time_ms for u in upstreams if u.response_time_ms is not None]
    return CheckResult(
        "stream",
        check.stream_id,
        check.name,
        status,
        started,
        error=error,
        response_time_ms=times[0] if times else None,
        protocol=check.protocol,
        upstreams=labelled,
    )
