"""Reading what to check, and writing results: history rows, flap-free state and state
changes together, many rows per short write transaction."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.schema import (
    health_checks,
    health_events,
    route_health_state,
    routes,
    stream_health_checks,
    stream_health_state,
    streams,
)
from db.sql import new_id

from . import totals
from .config import CHECKED_TYPES
from .row_ids import new_check_id
from .state import Change, State, advance, pending
from .verdict import CheckResult

CHUNK = 500  # ids per IN (...) list

ROUTE_COLUMNS = [
    routes.c[name]
    for name in (
        "id",
        "name",
        "domain",
        "enabled",
        "archived_at",
        "upstream_type",
        "upstreams",
        "health_check_enabled",
        "health_check_path",
        "health_check_interval",
        "health_check_status_codes",
        "health_check_body_regex",
        "health_check_max_response_ms",
        "skip_tls_verify",
        "upstream_protocol",
        "upstream_sni",
    )
]

ROUTE_ELIGIBLE = sa.and_(
    routes.c.enabled == 1,
    routes.c.archived_at.is_(None),
    routes.c.health_check_enabled == 1,
    routes.c.upstream_type.in_(CHECKED_TYPES),
)
STREAM_ELIGIBLE = streams.c.enabled == 1

_STATE_TABLES = {
    "route": (route_health_state, "route_id"),
    "stream": (stream_health_state, "stream_id"),
}


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextmanager
def lenient_text(conn: Connection) -> Iterator[None]:
    """On SQLite, read text that is not valid UTF-8 (the sqlite3 shell can store it) with
    U+FFFD for the bad bytes: otherwise one such value fails the query for every row."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    previous = raw.text_factory
    raw.text_factory = _decode
    try:
        yield
    finally:
        raw.text_factory = previous


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def load_routes(conn: Connection, ids: Sequence[str] | None) -> list[dict]:
    """Route rows by id (every one that exists), or every eligible route when `ids` is None."""
    with lenient_text(conn):
        return _load_routes(conn, ids)


def _load_routes(conn: Connection, ids: Sequence[str] | None) -> list[dict]:
    if ids is None:
        query = sa.select(*ROUTE_COLUMNS).where(ROUTE_ELIGIBLE).order_by(routes.c.id)
        return [dict(row) for row in conn.execute(query).mappings()]
    found: list[dict] = []
    for part in chunks(list(ids)):
        query = sa.select(*ROUTE_COLUMNS).where(routes.c.id.in_(part))
        found.extend(dict(row) for row in conn.execute(query).mappings())
    return found


def load_streams(conn: Connection, ids: Sequence[str] | None) -> list[dict]:
    with lenient_text(conn):
        return _load_streams(conn, ids)


def _load_streams(conn: Connection, ids: Sequence[str] | None) -> list[dict]:
    if ids is None:
        query = sa.select(streams).where(STREAM_ELIGIBLE).order_by(streams.c.id)
        return [dict(row) for row in conn.execute(query).mappings()]
    found: list[dict] = []
    for part in chunks(list(ids)):
        found.extend(
            dict(row)
            for row in conn.execute(sa.select(streams).where(streams.c.id.in_(part))).mappings()
        )
    return found


def route_ineligible_reason(row: dict) -> str | None:
    """Why a route is not health-checked, or None when it is."""
    if not row.get("enabled"):
        return "the route is disabled"
    if row.get("archived_at") is not None:
        return "the route is archived"
    if not row.get("health_check_enabled"):
        return "health checks are turned off for the route"
    if row.get("upstream_type") not in CHECKED_TYPES:
        return f"routes of type {row.get('upstream_type')!r} have no upstream to check"
    return None


def write_results(
    engine: Engine, results: Sequence[CheckResult], rise: int, fall: int
) -> list[Change]:
    """Write the results in one short transaction: a history row each, the new state, and
    an event for each status change. State is read inside the same transaction, so
    concurrent writers (other batches, other consumers) never lose a result."""
    changes: list[Change] = []
    if not results:
        return changes
    now = time.time()
    with write_transaction(engine) as conn:
        for kind in ("route", "stream"):
            mine = [r for r in results if r.kind == kind]
            if mine:
                changes.extend(_write_kind(conn, kind, mine, rise, fall, now))
    return changes


def _write_kind(
    conn: Connection, kind: str, results: Sequence[CheckResult], rise: int, fall: int, now: float
) -> list[Change]:
    table, key = _STATE_TABLES[kind]
    existing = _existing(
        conn, routes if kind == "route" else streams, {r.target_id for r in results}
    )
    results = [r for r in results if r.target_id in existing]  # deleted since it was probed
    if not results:
        return []
    states = _read_states(conn, table, key, existing)
    rows, state_rows, events, changes = [], [], [], []
    for result in results:  # in order: two results for one target apply one after the other
        checked_at = int(result.started_at)
        state, change = advance(
            states.get(result.target_id, State()), result.status, checked_at, rise, fall
        )
        states[result.target_id] = state
        rows.append(_history_row(result, checked_at))
        state_rows.append(
            {
                key: result.target_id,
                "status": state.status,
                "status_since": state.status_since,
                "recent": state.recent,
                "consecutive_successes": state.consecutive_successes,
                "consecutive_failures": state.consecutive_failures,
                "last_result": result.status,
                "last_error": result.error,
                "last_checked_at": result.started_at,
                "last_lateness_ms": result.lateness_ms,
                "updated_at": now,
            }
        )
        if change:
            reason = change.reason + (f": {result.error}" if result.error else "")
            changes.append(Change(change.from_status, change.to_status, reason))
            events.append(
                {
                    "id": new_id(),
                    "target_type": kind,
                    "target_id": result.target_id,
                    "from_status": change.from_status,
                    "to_status": change.to_status,
                    "reason": reason,
                    "created_at": checked_at,
                }
            )
    conn.execute((health_checks if kind == "route" else stream_health_checks).insert(), rows)
    totals.add(conn, kind, results)  # never pruned: what /metrics counts checks from
    latest = list({row[key]: row for row in state_rows}.values())
    columns = [name for name in latest[0] if name != key]
    conn.execute(_upsert_state(conn, table, key, columns), latest)
    if events:
        conn.execute(health_events.insert(), events)
    _bring_forward(conn, table, key, results, states)
    return changes


def _bring_forward(
    conn: Connection,
    table: sa.Table,
    key: str,
    results: Sequence[CheckResult],
    states: dict[str, State],
) -> None:
    """Fast re-checks: a target whose transition is still pending after its latest result
    is due again at that result's `recheck_at` when that is earlier than its next due time.
    The update is conditional in SQL (atomic against any other writer) and only ever moves
    a scheduled time earlier:

    - it never sets a schedule that is not there (NULL: no dispatcher has scheduled the
      target, e.g. only `run-once health` runs; a dispatcher will put it on its phase);
    - it leaves a schedule more than one interval after the check ended: the dispatcher
      has already claimed the slot after the check (next_due_at is that slot + interval),
      and that claimed check is the re-check. Brought back before the claimed slot, the
      next claim would move it to that same slot again: one slot checked twice.

    A dispatcher that claims the row between its read and its write overwrites this; the
    check it claims is then due within its look-ahead and serves as the re-check."""
    latest = {r.target_id: r for r in results}
    moves = [
        {
            "target": target_id,
            "due": r.recheck_at,
            "bound": (r.started_at if r.ended_at is None else r.ended_at) + r.interval,
        }
        for target_id, r in latest.items()
        if r.recheck_at is not None and r.interval and pending(states[target_id])
    ]
    if not moves:
        return
    due = sa.bindparam("due", type_=sa.Float)
    stmt = (
        table.update()
        .where(table.c[key] == sa.bindparam("target"))
        .where(table.c.next_due_at > due)
        .where(table.c.next_due_at <= sa.bindparam("bound", type_=sa.Float))
        .values(next_due_at=due)
    )
    conn.execute(stmt, moves)


def _history_row(result: CheckResult, checked_at: int) -> dict:
    if result.kind == "route":
        return {
            "id": new_check_id(),
            "route_id": result.target_id,
            "checked_at": checked_at,
            "status_code": result.status_code,
            "response_time_ms": result.response_time_ms,
            "body_matched": None if result.body_matched is None else int(result.body_matched),
            "overall_status": result.status,
            "error": result.error,
        }
    return {
        "id": new_id(),
        "stream_id": result.target_id,
        "checked_at": checked_at,
        "protocol": result.protocol or "tcp",
        "status": result.status,
        "response_time_ms": result.response_time_ms,
        "error": result.error,
    }


def _read_states(
    conn: Connection, table: sa.Table, key: str, ids: Iterable[str]
) -> dict[str, State]:
    found: dict[str, State] = {}
    for part in chunks(sorted(ids)):
        query = sa.select(
            table.c[key],
            table.c.status,
            table.c.status_since,
            table.c.recent,
            table.c.consecutive_successes,
            table.c.consecutive_failures,
        ).where(table.c[key].in_(part))
        for row in conn.execute(query):
            found[row[0]] = State(
                row.status,
                row.status_since,
                row.recent or "",
                row.consecutive_successes,
                row.consecutive_failures,
            )
    return found


def _existing(conn: Connection, table: sa.Table, ids: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(sorted(ids)):
        found.update(conn.execute(sa.select(table.c.id).where(table.c.id.in_(part))).scalars())
    return found


def _upsert_state(conn: Connection, table: sa.Table, key: str, columns: list[str]):
    """Insert or update state rows; an on-demand check (no lateness) keeps the lateness of
    the latest scheduled one, which is what `status` reports."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    values = {c: stmt.excluded[c] for c in columns}
    values["last_lateness_ms"] = sa.func.coalesce(
        stmt.excluded.last_lateness_ms, table.c.last_lateness_ms
    )
    return stmt.on_conflict_do_update(index_elements=[key], set_=values)
