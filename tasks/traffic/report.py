"""Per-route traffic over a recent window (for the CLI): from the `traffic_metrics`
minutes for up to a day, from the `traffic_rollups` hours or days beyond."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.schema import routes, traffic_metrics, traffic_rollups

from . import histogram
from .buckets import bucket_start, bucket_table

DAY_S = 86_400


def bucket_for(since_s: float) -> str:
    """The finest bucket size kept for a window this long (1m for up to a day)."""
    if since_s <= DAY_S:
        return "1m"
    if since_s <= 60 * DAY_S:
        return "1h"
    return "1d"


@dataclass
class RouteTraffic:
    route_id: str
    domain: str | None = None
    requests: int = 0
    errors: int = 0
    bytes: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "route_id": self.route_id,
            "domain": self.domain,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "bytes": self.bytes,
            "p50_ms": histogram.percentile(self.hist, 0.50),
            "p95_ms": histogram.percentile(self.hist, 0.95),
            "p99_ms": histogram.percentile(self.hist, 0.99),
        }


def traffic_by_route(
    engine: Engine, since_s: float, now: float, route_id: str | None = None
) -> tuple[str, int, list[dict]]:
    """(bucket size used, window start in ms, one dict per route, busiest first)."""
    size = bucket_for(since_s)
    start = bucket_start(size, int((now - since_s) * 1000))
    tm = {t.name: t for t in (traffic_metrics, traffic_rollups)}[bucket_table(size)]
    query = sa.select(
        tm.c.route_id, tm.c.requests, tm.c.errors, tm.c.bytes, tm.c.latency_hist
    ).where(tm.c.bucket == size, tm.c.bucket_ts >= sa.literal(start, sa.BigInteger))  # ms: past int4
    if route_id:
        query = query.where(tm.c.route_id == route_id)
    found: dict[str, RouteTraffic] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            item = found.get(row.route_id)
            if item is None:
                item = found[row.route_id] = RouteTraffic(row.route_id)
            item.requests += row.requests or 0
            item.errors += row.errors or 0
            item.bytes += row.bytes or 0
            histogram.merge(item.hist, histogram.decode(row.latency_hist))
        if found:
            names = conn.execute(
                sa.select(routes.c.id, routes.c.domain).where(routes.c.id.in_(list(found)))
            )
            for rid, domain in names:
                found[rid].domain = domain
    ordered = sorted(found.values(), key=lambda t: (-t.requests, t.route_id))
    return size, start, [t.as_dict() for t in ordered]
