"""ProxyOS's access-log ring: each route keeps only its newest N `access_log` rows.

ProxyOS's collector keeps the newest 1,000 rows per route (by `recorded_at`), and its
route page reads every row of a route every few seconds, so a route must never hold many
more. The ingest job trims the routes it wrote to after each run. A row is never
deleted before the aggregate watermark has passed it (it would be lost from the
counts); such a row is kept, even past the cap, until it is counted.

Ties on `recorded_at` (whole seconds) are broken by the row's key (SQLite's rowid,
which the `(route_id, recorded_at)` index carries; the id on PostgreSQL), so the cap is
exact: a trimmed route holds at most N rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import is_sqlite, write_transaction

from .retention import COUNTED

DELETE_BATCH = 5000  # rows per write transaction, so the write lock is held briefly


def _key(engine: Engine) -> str:
    return "rowid" if is_sqlite(engine) else "id"


def _oldest_kept(engine: Engine, route: str, keep: int) -> tuple | None:
    """(recorded_at, key) of the newest row beyond the newest `keep`, or None."""
    key = _key(engine)
    with engine.connect() as conn:  # a plain read: no write lock
        return conn.execute(
            sa.text(
                f"SELECT recorded_at, {key} FROM access_log WHERE route_id = :route"
                f" ORDER BY recorded_at DESC, {key} DESC LIMIT 1 OFFSET :keep"
            ),
            {"route": route, "keep": keep},
        ).first()


def trim_route(engine: Engine, route: str, keep: int) -> int:
    """Delete the counted rows of `route` beyond its newest `keep`; returns how many."""
    bound = _oldest_kept(engine, route, keep)
    if bound is None:
        return 0
    key = _key(engine)
    statement = sa.text(
        f"DELETE FROM access_log WHERE {key} IN (SELECT {key} FROM access_log"
        f" WHERE route_id = :route AND (recorded_at < :ts OR (recorded_at = :ts AND {key} <= :key))"
        f" AND {COUNTED} LIMIT {DELETE_BATCH})"
    )
    total = 0
    while True:
        with write_transaction(engine) as conn:
            deleted = conn.execute(statement, {"route": route, "ts": bound[0], "key": bound[1]}).rowcount
        total += deleted
        if deleted < DELETE_BATCH:
            return total


def trim(engine: Engine, routes: Iterable[str], keep: int) -> int:
    """Trim each of `routes` to its newest `keep` rows (0: no cap); returns rows deleted."""
    if keep <= 0:
        return 0
    return sum(trim_route(engine, route, keep) for route in sorted(set(routes)))
