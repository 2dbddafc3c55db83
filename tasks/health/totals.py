"""The checks' cumulative totals (`health_check_totals`) and what `GET /metrics` reads of
health: each route's and stream's state (`*_health_state`, the workers' own, flap-free)
and its checks by result with their time.

`add` runs in the transaction that writes the results, so each check is counted once;
retention cuts the history to 100 rows a route, never these rows. Every read is bounded
by the number of routes and streams, and returns plain tuples (one scrape reads a few
thousand rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import health_check_totals, route_health_state, routes, stream_health_state, streams
from db.sql import driver_mark

from .verdict import CheckResult

# kind -> (the targets' table, their state table, its key column)
_KINDS = {"route": (routes, route_health_state, "route_id"), "stream": (streams, stream_health_state, "stream_id")}


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


def states(conn: Connection, kind: str) -> list[sa.Row]:
    """(id, status) of every route (`kind` route) or stream with a state row."""
    table, state, key = _KINDS[kind]
    return conn.execute(sa.select(state.c[key], state.c.status).join(table, table.c.id == state.c[key])).all()


def totals(conn: Connection, kind: str) -> list[sa.Row]:
    """(id, result, checks, timed, duration_ms_sum) of the routes (`kind` route) or
    streams that still exist, a row per result, ordered by id."""
    table = _KINDS[kind][0]
    t = health_check_totals
    return conn.execute(
        sa.select(t.c.target_id, t.c.result, t.c.checks, t.c.timed, t.c.duration_ms_sum)
        .join(table, table.c.id == t.c.target_id)
        .where(t.c.target_type == kind)
        .order_by(t.c.target_id)
    ).all()


def stream_names(conn: Connection) -> list[sa.Row]:
    """(id, listen_port, protocol) of every stream: what names it in a person's words."""
    return conn.execute(sa.select(streams.c.id, streams.c.listen_port, streams.c.protocol)).all()
