"""Tables of the health checker (migration 0003): stream results, flap-free state of
each route and stream, and the state changes; the checks' totals (migration 0010).

`*_health_state.next_due_at` and `last_checked_at` are REAL seconds since the epoch
(the scheduler needs sub-second precision); the other `*_at` columns are INTEGER seconds
as ProxyOS stores them.
"""

from __future__ import annotations

from sqlalchemy import Float, Index, Table

from .columns import BIG, INT, c, metadata


def _state_columns() -> list:
    return [
        c("status", nn=True, default="unknown"),  # unknown | healthy | degraded | unhealthy
        c("status_since", INT),
        c("recent", nn=True, default=""),  # the latest results, oldest first: H, D or U each
        c("consecutive_successes", INT, nn=True, default=0),  # healthy or degraded results
        c("consecutive_failures", INT, nn=True, default=0),  # unhealthy results
        c("last_result"),
        c("last_error"),
        c("last_checked_at", Float),
        c("last_lateness_ms", INT),
        c("next_due_at", Float),  # NULL: not scheduled yet
        c("updated_at", Float),
    ]


stream_health_checks = Table(
    "stream_health_checks",
    metadata,
    c("id", pk=True),
    c("stream_id", nn=True, fk="streams.id"),
    c("checked_at", INT, nn=True),
    c("protocol", nn=True),
    c("status", nn=True),
    c("response_time_ms", INT),
    c("error"),
    Index("ix_stream_health_checks_stream_checked", "stream_id", "checked_at"),
)

route_health_state = Table(
    "route_health_state",
    metadata,
    c("route_id", pk=True, fk="routes.id"),
    *_state_columns(),
    Index("ix_route_health_state_next_due", "next_due_at"),
)

stream_health_state = Table(
    "stream_health_state",
    metadata,
    c("stream_id", pk=True, fk="streams.id"),
    *_state_columns(),
    Index("ix_stream_health_state_next_due", "next_due_at"),
)

health_events = Table(
    "health_events",
    metadata,
    c("id", pk=True),
    c("target_type", nn=True),  # route | stream
    c("target_id", nn=True),
    c("from_status", nn=True),
    c("to_status", nn=True),
    c("reason"),
    c("created_at", INT, nn=True),
    Index("ix_health_events_target_created", "target_id", "created_at"),
    Index("ix_health_events_created", "created_at"),
)

# Every check the workers made, per route or stream and result, since migration 0010;
# added to in the transaction that writes the results, never pruned (the history is cut
# to 100 rows a route): `GET /metrics` counts checks and their time from here.
health_check_totals = Table(
    "health_check_totals",
    metadata,
    c("target_type", pk=True),  # route | stream
    c("target_id", pk=True),
    c("result", pk=True),  # healthy | degraded | unhealthy
    c("checks", BIG, nn=True, default=0),
    c("timed", BIG, nn=True, default=0),  # the checks with a response time
    c("duration_ms_sum", BIG, nn=True, default=0),  # their response times
)
