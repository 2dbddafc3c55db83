"""ProxyOS's access-log ring: each route keeps only its newest N `access_log` rows.

ProxyOS's collector keeps the newest 1,000 rows per route (by `recorded_at`), and its
route page reads every row of a route every few seconds, so a route must never hold many
more. The ingest job never stores a row that lines it has already read push beyond the
cap (`Doom`: such a row is counted, not stored), and cuts every route it wrote to at the
end of each run (`trim`), in key order across routes. A row is never deleted before
the aggregate watermark has passed it (it would be lost from the counts); such a row is
kept, even past the cap, until it is counted.

Ties on `recorded_at` (whole seconds) are broken by the row's key (SQLite's rowid,
which the `(route_id, recorded_at)` index carries; the id on PostgreSQL), so the cap is
exact: a trimmed route holds at most N rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.sql import driver_mark

from .retention import COUNTED

DELETE_BATCH = 5000  # rows per write transaction, so the write lock is held briefly


def _key(engine: Engine | Connection) -> str:
    return "rowid" if engine.dialect.name == "sqlite" else "id"


def _probe(key: str) -> sa.TextClause:
    return sa.text(
        f"SELECT recorded_at, {key} FROM access_log WHERE route_id = :route"
        f" ORDER BY recorded_at DESC, {key} DESC LIMIT 1 OFFSET :keep"
    )


class Doom:
    """Which of the rows an ingest run has read the cap is bound to delete: a row with at
    least `keep` rows of its route read after it, and newer (by `recorded_at`, then read
    order). Once those are stored it is beyond the cap, so the run counts it and never
    stores it. Rows read after it in the same run are stored before the run ends (or, if
    the run stops first, read again by the next one), so the ring holds exactly the
    newest rows after every run."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._read: dict[str, int] = {}  # route -> rows of it read so far
        self._newest: dict[str, deque[int]] = {}  # route -> recorded_at of its last `keep` rows read

    def saw(self, route: str, recorded_at: int) -> int:
        """Note a row read (in read order); returns its number among its route's rows."""
        if self.keep <= 0:
            return 0
        number = self._read.get(route, 0) + 1
        self._read[route] = number
        newest = self._newest.get(route)
        if newest is None:
            newest = self._newest[route] = deque(maxlen=self.keep)
        newest.append(recorded_at)
        return number

    def doomed(self, rows: list[tuple], numbers: list[int]) -> list[bool]:
        """For each of `rows` (ingest rows, `recorded_at` at index 8, numbered by `saw`):
        whether the cap is bound to delete it."""
        doomed = [False] * len(rows)
        if self.keep <= 0:
            return doomed
        floors: dict[str, int] = {}
        for i, row in enumerate(rows):
            route = row[0]
            if self._read[route] - numbers[i] >= self.keep:  # its route's last `keep` rows came later
                floor = floors.get(route)
                if floor is None:
                    floor = floors[route] = min(self._newest[route])
                doomed[i] = row[8] <= floor  # and all of them are newer
        for i in _overflow(rows, self.keep):  # out of order within the rows themselves
            doomed[i] = True
        return doomed


def _overflow(rows: list[tuple], keep: int) -> list[int]:
    """The indexes of `rows` that are not among the newest `keep` of their route within
    `rows` itself."""
    positions: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        positions.setdefault(row[0], []).append(i)
    doomed: list[int] = []
    for mine in positions.values():
        if len(mine) > keep:
            mine.sort(key=lambda i: (rows[i][8], i))  # 8: recorded_at; ties: later is newer
            doomed.extend(mine[: len(mine) - keep])
    return doomed


def _bounds(engine: Engine, routes: list[str], keep: int) -> list[tuple[str, tuple]]:
    """(route, (recorded_at, key) of its newest row beyond the newest `keep`) for each
    route that holds more than `keep` rows: one index probe per route, in one read."""
    probe = _probe(_key(engine))
    found = []
    with engine.connect() as conn:  # a plain read: no write lock
        for route in routes:
            bound = conn.execute(probe, {"route": route, "keep": keep}).first()
            if bound is not None:
                found.append((route, tuple(bound)))
    return found


def _doomed(engine: Engine, bounds: list[tuple[str, tuple]]) -> list[tuple]:
    """(key, route, bound recorded_at) of every counted row beyond its route's bound, in
    key order: deleting in that order walks the table and most indexes front to back,
    instead of hopping across them route by route."""
    key = _key(engine)
    mark = driver_mark(engine)
    select = (
        f"SELECT {key} FROM access_log WHERE route_id = {mark}"
        f" AND recorded_at <= {mark} AND (recorded_at < {mark} OR {key} <= {mark}) AND {COUNTED}"
    )
    found: list[tuple] = []
    with engine.connect() as conn:  # a plain read: no write lock
        for route, (ts, bound) in bounds:
            keys = conn.exec_driver_sql(select, (route, ts, ts, bound)).scalars().all()
            found.extend((k, route, ts) for k in keys)
    found.sort()
    return found


def routes_between(engine: Engine, low: int, high: int) -> set[str]:
    """The routes of the rows with low < seq <= high."""
    with engine.connect() as conn:
        return set(conn.execute(
            sa.text("SELECT DISTINCT route_id FROM access_log WHERE seq > :low AND seq <= :high"),
            {"low": low, "high": high}).scalars())


def trim(engine: Engine, routes: Iterable[str], keep: int) -> int:
    """Delete the counted rows of each of `routes` beyond its newest `keep` (0: no cap),
    at most `DELETE_BATCH` rows a write transaction; returns how many were deleted."""
    if keep <= 0:
        return 0
    doomed = _doomed(engine, _bounds(engine, sorted(set(routes)), keep))
    mark = driver_mark(engine)
    # the route and bound are checked again: a SQLite rowid freed meanwhile may be reused
    delete = (f"DELETE FROM access_log WHERE {_key(engine)} = {mark} AND route_id = {mark}"
              f" AND recorded_at <= {mark}")
    total = 0
    for start in range(0, len(doomed), DELETE_BATCH):
        with write_transaction(engine) as conn:  # straight to the driver: many small statements
            total += conn.exec_driver_sql(delete, doomed[start : start + DELETE_BATCH]).rowcount
    return total
