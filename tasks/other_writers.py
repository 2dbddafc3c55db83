"""Rows that someone else is writing into the tables the workers write: ProxyOS's own
loops, which its dashboard starts unconditionally.

- `access_log`: ProxyOS's analytics collector tails the same Caddy log and inserts one row
  per request, without `seq`. Rows without `seq` newer than `proxyos_rows_until` (what
  ProxyOS had stored when the workers first ingested) were written since the workers took
  over: the same requests, stored twice.
- `traffic_metrics`: the same collector keeps its own `1m` rows, with random ids; the
  workers' rows have the id `1m-<bucket_ts>-<route_id>`. Such rows for minutes after
  `proxyos_rows_until` mean the dashboard adds every request twice.
- `health_checks`: ProxyOS's health checker inserts a row per route every 60 s, with a
  random id; the workers' ids carry a digest (`tasks.health.row_ids`). A row without it,
  newer than a row of the workers' for the same route, is someone else's.

The workers never count these rows: aggregation reads only rows with `seq`. Every query
here is bounded: a recent window, walked newest first through an index, with a limit, on
a few of the routes that had traffic or checks in that window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.schema import access_log, health_checks, route_health_state, traffic_metrics

from .health.row_ids import is_workers_check_id
from .traffic import state

WINDOW_S = 3600  # how far back rows are looked at
ACCESS_LOG_SAMPLE = 2000  # newest access_log rows looked at
ROUTE_SAMPLE = 20  # routes whose recent traffic_metrics / health_checks rows are looked at
ROWS_PER_ROUTE = 100  # newest health_checks rows looked at per route

COLLECTOR = "ProxyOS's analytics collector"
HEALTH_CHECKER = "ProxyOS's health checker"
COLLECTOR_ADVICE = (
    "the dashboard counts those requests twice; point the dashboard's PROXYOS_ACCESS_LOG at a path Caddy "
    "does not write (e.g. /data/proxyos/access.log.unused) and restart it, so that only the workers read "
    "the log, or set PROXYOS_JOBS=all,-ingest,-aggregate for the workers to leave traffic to ProxyOS"
)
HEALTH_ADVICE = (
    "each route's history holds both its checks and the workers'; ProxyOS has no setting to stop that loop "
    "(every 60 s, every route with health checks on), so set PROXYOS_JOBS=all,-health for the workers to "
    "leave route health checks to it, or keep both"
)


@dataclass(frozen=True)
class OtherWriter:
    table: str
    writer: str  # which ProxyOS loop
    rows: int  # its rows among those looked at (a bounded sample of the window)
    newest_at: float  # seconds since the epoch
    advice: str

    def message(self) -> str:
        return (f"{self.writer} is also writing {self.table} ({self.rows} rows seen in the last "
                f"{WINDOW_S // 60} min that the workers did not write): {self.advice}")

    def as_dict(self) -> dict:
        return {**asdict(self), "message": self.message()}


def in_access_log(conn: Connection, now: float, sample: int = ACCESS_LOG_SAMPLE) -> OtherWriter | None:
    until = state.proxyos_rows_until(conn)
    if until is None:  # the workers never ingested: ProxyOS is the only writer
        return None
    newest = _newest_access_rows(conn, now, sample)
    theirs = [r.recorded_at for r in newest if r.seq is None and r.recorded_at > until]
    if not theirs:
        return None
    return OtherWriter("access_log", COLLECTOR, len(theirs), float(max(theirs)), COLLECTOR_ADVICE)


def in_traffic_metrics(conn: Connection, now: float, routes: int = ROUTE_SAMPLE) -> OtherWriter | None:
    until = state.proxyos_rows_until(conn)
    if until is None:
        return None
    route_ids = list(dict.fromkeys(r.route_id for r in _newest_access_rows(conn, now, ACCESS_LOG_SAMPLE)))[:routes]
    if not route_ids:
        return None
    tm = traffic_metrics
    first_minute_ms = (int(until) // 60 + 1) * 60_000  # the minute after ProxyOS's last stored row
    ours = sa.literal("1m-") + sa.cast(tm.c.bucket_ts, sa.Text) + sa.literal("-") + tm.c.route_id
    found = conn.execute(
        sa.select(sa.func.count(), sa.func.max(tm.c.bucket_ts)).where(
            tm.c.route_id.in_(route_ids),
            tm.c.bucket == "1m",
            tm.c.bucket_ts >= max(first_minute_ms, int(now - WINDOW_S) * 1000),
            tm.c.id != ours,
        )
    ).one()
    if not found[0]:
        return None
    return OtherWriter("traffic_metrics", COLLECTOR, int(found[0]), found[1] / 1000, COLLECTOR_ADVICE)


def in_health_checks(
    conn: Connection, now: float, routes: int = ROUTE_SAMPLE, per_route: int = ROWS_PER_ROUTE
) -> OtherWriter | None:
    since = now - WINDOW_S
    checked = conn.execute(
        sa.select(route_health_state.c.route_id)
        .where(route_health_state.c.last_checked_at >= since)
        .order_by(route_health_state.c.last_checked_at.desc())
        .limit(routes)
    ).scalars().all()
    theirs: list[int] = []
    for route_id in checked:
        rows = conn.execute(
            sa.select(health_checks.c.id, health_checks.c.checked_at)
            .where(health_checks.c.route_id == route_id, health_checks.c.checked_at >= int(since))
            .order_by(health_checks.c.checked_at.desc())
            .limit(per_route)
        ).all()
        theirs.extend(foreign_checks(rows))
    if not theirs:
        return None
    return OtherWriter("health_checks", HEALTH_CHECKER, len(theirs), float(max(theirs)), HEALTH_ADVICE)


def foreign_checks(rows: Sequence[sa.Row]) -> list[int]:
    """`checked_at` of one route's rows that the workers did not write, counting only rows
    newer than the oldest of theirs: rows from before the workers marked their ids (or
    before they ran) are not someone else's for sure."""
    ours = [r.checked_at for r in rows if is_workers_check_id(r.id)]
    if not ours:
        return []
    since = min(ours)
    return [r.checked_at for r in rows if r.checked_at > since and not is_workers_check_id(r.id)]


def _newest_access_rows(conn: Connection, now: float, sample: int) -> list[sa.Row]:
    return conn.execute(
        sa.select(access_log.c.route_id, access_log.c.seq, access_log.c.recorded_at)
        .where(access_log.c.recorded_at >= int(now - WINDOW_S))
        .order_by(access_log.c.recorded_at.desc())
        .limit(sample)
    ).all()


CHECKS: dict[str, Callable[[Connection, float], OtherWriter | None]] = {
    "access_log": in_access_log,
    "traffic_metrics": in_traffic_metrics,
    "health_checks": in_health_checks,
}


def detect(engine: Engine, tables: Iterable[str], now: float) -> list[OtherWriter]:
    """Another writer in each of `tables` (keys of CHECKS), where one is seen."""
    found = []
    with engine.connect() as conn:
        for table in tables:
            writer = CHECKS[table](conn, now)
            if writer:
                found.append(writer)
    return found
