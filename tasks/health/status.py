"""What `proxyos-worker status` shows for health: status counts and lateness."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.schema import route_health_state, routes, stream_health_state, streams

from .store import ROUTE_ELIGIBLE, STREAM_ELIGIBLE

LATE_AFTER_S = 2.0  # a check still unclaimed this long after its due time is overdue


def _percentile(values: list[int], fraction: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(engine: Engine, now: float) -> dict:
    """Flat figures: how many routes and streams are in each status (`unknown`: not yet
    decided, see the thresholds), and how late checks run (over each one's latest
    scheduled check) or are overdue (due, not yet claimed by the dispatcher)."""
    out: dict = {}
    late: list[int] = []
    overdue: list[float] = []
    with engine.connect() as conn:
        for kind, table, state, key, eligible in (
            ("routes", routes, route_health_state, "route_id", ROUTE_ELIGIBLE),
            ("streams", streams, stream_health_state, "stream_id", STREAM_ELIGIBLE),
        ):
            rows = conn.execute(
                sa.select(state.c.status, state.c.last_lateness_ms, state.c.next_due_at)
                .select_from(table.outerjoin(state, state.c[key] == table.c.id))
                .where(eligible)
            ).all()
            for status in ("healthy", "degraded", "unhealthy", "unknown"):
                out[f"{kind}_{status}"] = sum(1 for r in rows if (r.status or "unknown") == status)
            late.extend(r.last_lateness_ms for r in rows if r.last_lateness_ms is not None)
            overdue.extend(
                now - r.next_due_at
                for r in rows
                if r.next_due_at is not None and r.next_due_at < now - LATE_AFTER_S
            )
    out["lateness_p50_ms"] = _percentile(late, 0.50)
    out["lateness_p99_ms"] = _percentile(late, 0.99)
    out["lateness_max_ms"] = max(late) if late else None
    out["overdue"] = len(overdue)
    out["most_overdue_s"] = round(max(overdue), 1) if overdue else 0
    return out
