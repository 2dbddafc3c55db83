"""The checks' cumulative totals (`health_check_totals`) and what `GET /metrics` reads of
health: each route's and stream's state (`*_health_state`, the workers' own, flap-free)
and its checks by result with their time.

`add` runs in the transaction that writes the results, so each check is counted once;
retention cuts the history to 100 rows a route, never these rows. Every read is bounded
by the number of routes and streams.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import health_check_totals, route_health_state, routes, stream_health_state, streams
from db.sql import driver_mark

from .verdict import CheckResult


def add(conn: Connection, kind: str, results: Sequence[CheckResult]) -> None:
    """Add one `kind` (route or stream) batch of results, in the caller's transaction."""
    delta: dict[tuple[str, str], list[int]] = {}
    for result in results:
        sums = delta.setdefault((result.target_id, result.status), [0, 0, 0])
        sums[0] += 1
        if result.response_time_ms is not None:
            sums[1] += 1
            sums[2] += result.response_time_ms
    if not delta:
        return
    mark = driver_mark(conn)
    conn.exec_driver_sql(
        "INSERT INTO health_check_totals (target_type, target_id, result, checks, timed, duration_ms_sum)"
        f" VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})"
        " ON CONFLICT (target_type, target_id, result)"
        " DO UPDATE SET checks = health_check_totals.checks + excluded.checks,"
        " timed = health_check_totals.timed + excluded.timed,"
        " duration_ms_sum = health_check_totals.duration_ms_sum + excluded.duration_ms_sum",
        [(kind, target, result, *sums) for (target, result), sums in sorted(delta.items())],
    )


def states(conn: Connection) -> list[tuple[str, str, str, str]]:
    """(kind, id, name, status) of every route and stream with a state row: the route's
    domain, or the stream's listen port, as its name."""
    found = [
        ("route", row[0], row[1], row[2])
        for row in conn.execute(
            sa.select(routes.c.id, routes.c.domain, route_health_state.c.status)
            .join(route_health_state, route_health_state.c.route_id == routes.c.id)
        )
    ]
    found += [
        ("stream", row[0], str(row[1]), row[2])
        for row in conn.execute(
            sa.select(streams.c.id, streams.c.listen_port, stream_health_state.c.status)
            .join(stream_health_state, stream_health_state.c.stream_id == streams.c.id)
        )
    ]
    return found


def totals(conn: Connection) -> list[sa.Row]:
    """(target_type, target_id, result, checks, timed, duration_ms_sum) of the routes and streams
    that still exist."""
    t = health_check_totals
    rows = []
    for kind, table in (("route", routes), ("stream", streams)):
        rows += conn.execute(
            sa.select(t.c.target_type, t.c.target_id, t.c.result, t.c.checks, t.c.timed, t.c.duration_ms_sum)
            .join(table, table.c.id == t.c.target_id)
            .where(t.c.target_type == kind)
        ).all()
    return rows
