"""Named counters in `traffic_state`: the last ingest sequence number handed out and
the aggregation watermark. Updated only inside the write transaction that depends on
them, so they commit (or not) together with the rows they describe."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.problem import Problem
from db.schema import access_log, traffic_state
from db.sql import insert_or_ignore

INGEST_SEQ = "ingest_seq"  # the highest access_log.seq handed out (and committed)
AGGREGATED_SEQ = "aggregated_seq"  # every row with seq <= this is in traffic_metrics
RING_SEQ = "ring_seq"  # every route with a row up to this seq was trimmed since (ring.trim)
# The newest recorded_at of the rows ProxyOS stored itself (no seq) when the workers first
# ingested: log lines up to then are in access_log already. 0: there were none.
PROXYOS_ROWS_UNTIL = "proxyos_rows_until"


class ConcurrentChange(Problem, RuntimeError):
    """Another run moved a counter this transaction relied on; it was rolled back."""


def ensure(conn: Connection, name: str) -> None:
    conn.execute(insert_or_ignore(conn, traffic_state).values(name=name, value=0))


def proxyos_rows_until(conn: Connection) -> int | None:
    """`PROXYOS_ROWS_UNTIL`, or None before the first ingest measured it."""
    found = conn.execute(
        sa.select(traffic_state.c.value).where(traffic_state.c.name == PROXYOS_ROWS_UNTIL)
    ).scalar()
    return None if found is None else int(found)


def newest_proxyos_row(conn: Connection) -> int:
    """The newest `recorded_at` of the rows ProxyOS wrote itself (0 if none). It reads
    every such row: run it once, and outside a write transaction."""
    newest = conn.execute(
        sa.select(sa.func.max(access_log.c.recorded_at)).where(access_log.c.seq.is_(None))
    ).scalar()
    return int(newest or 0)


def record_proxyos_rows_until(conn: Connection, value: int) -> int:
    """Keep `value` unless a concurrent first ingest kept its own; returns what is kept."""
    conn.execute(insert_or_ignore(conn, traffic_state).values(name=PROXYOS_ROWS_UNTIL, value=value))
    return read(conn, PROXYOS_ROWS_UNTIL)


_ALL = sa.select(traffic_state.c.name, traffic_state.c.value)  # built once: the idle look reads it every 5 s


def read_all(conn: Connection) -> dict[str, int]:
    """Every counter, in one query (the table holds a handful of rows)."""
    return {name: int(value or 0) for name, value in conn.execute(_ALL)}


def read(conn: Connection, name: str) -> int:
    value = conn.execute(
        sa.select(traffic_state.c.value).where(traffic_state.c.name == name)
    ).scalar()
    return int(value or 0)


def allocate(conn: Connection, name: str, count: int) -> int:
    """Hand out `count` numbers after the counter; returns the first. The row stays
    locked until commit, so numbers become visible in the order they were handed out."""
    conn.execute(
        sa.update(traffic_state)
        .where(traffic_state.c.name == name)
        .values(value=traffic_state.c.value + count)
    )
    return read(conn, name) - count + 1


def raise_to(conn: Connection, name: str, value: int) -> None:
    """Move the counter up to `value` (never down)."""
    conn.execute(sa.update(traffic_state).where(traffic_state.c.name == name, traffic_state.c.value < value)
                 .values(value=value))


def compare_and_set(conn: Connection, name: str, expected: int, new: int) -> None:
    changed = conn.execute(
        sa.update(traffic_state)
        .where(traffic_state.c.name == name, traffic_state.c.value == expected)
        .values(value=new)
    ).rowcount
    if changed != 1:
        raise ConcurrentChange(f"traffic_state.{name} moved from {expected} during this run")
