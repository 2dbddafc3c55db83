"""What `GET /metrics` reads of traffic, at a cost bounded by the routes and log sources,
never by the history:

- each route's domain and cumulative requests, errors (status >= 500) and bytes out,
  from `routes` and `traffic_route_totals` (added to in the transaction that counts rows
  into the 1m buckets; retention never deletes them, so they only grow);
- each log source's running line counts (`traffic_ingest_position`);
- the rows stored but not yet counted (the two sequence numbers in `traffic_state`);
- how far ingest is behind the log: unread bytes, and seconds between the log's last
  write and the newest request counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import routes, traffic_ingest_position, traffic_route_totals

from . import state


def route_totals(conn: Connection) -> list[sa.Row]:
    """(route_id, domain, requests, errors, bytes) of every route, ordered by id; the
    three counts are None for a route with no traffic counted yet."""
    t = traffic_route_totals
    return conn.execute(
        sa.select(routes.c.id, routes.c.domain, t.c.requests, t.c.errors, t.c.bytes)
        .outerjoin(t, t.c.route_id == routes.c.id)
        .order_by(routes.c.id)
    ).all()


def sources(conn: Connection) -> list[sa.Row]:
    """(source, read_offset, device, inode, lines, malformed, unmatched) per log read."""
    p = traffic_ingest_position
    return conn.execute(
        sa.select(p.c.source, p.c.read_offset, p.c.device, p.c.inode, p.c.lines, p.c.malformed, p.c.unmatched)
    ).all()


def not_counted(conn: Connection) -> int:
    """Rows ingest stored that the aggregation watermark has not passed yet."""
    return max(state.read(conn, state.INGEST_SEQ) - state.read(conn, state.AGGREGATED_SEQ), 0)


@dataclass(frozen=True)
class Lag:
    behind_bytes: int | None  # None: the log cannot be read here
    behind_seconds: float | None


def lag(conn: Connection, log: Path) -> Lag:
    """How far ingest is behind `log`: bytes not yet read (of the file it is reading, or
    all of a new one after a rotation), and, while there are any, the seconds from the
    newest request counted (`routes.last_traffic_at`) to the log's last write."""
    try:
        st = os.stat(log)
    except OSError:
        return Lag(None, None)
    p = traffic_ingest_position
    row = conn.execute(sa.select(p.c.read_offset, p.c.device, p.c.inode).where(p.c.source == str(log))).first()
    same = row is not None and row.device == st.st_dev and row.inode == st.st_ino
    behind = max(st.st_size - row.read_offset, 0) if same else st.st_size
    if not behind:
        return Lag(0, 0.0)
    newest = conn.execute(sa.select(sa.func.max(routes.c.last_traffic_at))).scalar()
    return Lag(behind, max(st.st_mtime - newest, 0.0) if newest else None)
