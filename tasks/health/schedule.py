"""When each route and stream is due, and the dispatcher's claim.

Every target has a fixed phase within its interval, derived from its id (a hash), so the
checks of thousands of routes are spread evenly over the interval instead of firing at
once, and the spread survives restarts. A target is due at `phase + k * interval`.

The dispatcher claims what falls due before `now + lookahead` by moving each one's
`next_due_at` one interval forward, in one short transaction, and hands the claimed
(id, due time) pairs to batches. A batch whose message is lost (a consumer killed) costs
those targets one check; the next due time re-drives them. A target missed by more than
one interval (the workers were stopped) is put back on its phase instead of all of them
firing at once.

Fast re-checks (HAProxy's `fastinter`): while a target's transition is pending (its
latest result disagrees with its status, `state.pending`), the code that writes its
result brings `next_due_at` forward to `fast_due` (the fast interval after the check
ended), never later than it was. The claim always moves a claimed target to the next slot
on its phase after the claimed time (`slot_after`), so once the state settles the target
is back on its phase, however many fast checks came between.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.schema import route_health_state, routes, stream_health_state, streams
from db.sql import upsert

from .config import DEFAULT_INTERVAL
from .settings import MAX_INTERVAL, MIN_INTERVAL, HealthSettings
from .store import ROUTE_ELIGIBLE, STREAM_ELIGIBLE, chunks

WRITE_SLICE = 1000  # schedule rows per write transaction


@dataclass(frozen=True)
class Due:
    kind: str  # "route" or "stream"
    target_id: str
    due_at: float


def phase(target_id: str, interval: float) -> float:
    """A stable offset in [0, interval) from the id."""
    digest = hashlib.blake2b(target_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * interval


def next_slot(target_id: str, interval: float, now: float) -> float:
    """The first due time at or after `now` on this target's phase."""
    offset = phase(target_id, interval)
    return offset + math.ceil((now - offset) / interval) * interval


SLOT_TOLERANCE = 0.001  # seconds: a slot this close after `t` counts as `t` itself


def slot_after(target_id: str, interval: float, t: float) -> float:
    """The first due time on this target's phase after `t` (after a due time on the phase,
    the next one: `t + interval`). Computed from the phase each time, so due times never
    drift off it, whatever the arithmetic of the interval."""
    offset = phase(target_id, interval)
    k = math.floor((t + SLOT_TOLERANCE - offset) / interval)  # the last slot not after t
    return offset + (k + 1) * interval


def fast_due(ended: float, interval: float, fast: float) -> float:
    """When a pending target is re-checked: `fast` seconds after its check ended, never
    later than one interval (`HealthSettings.fast_for` gives `fast`)."""
    return ended + min(fast, interval)


def following(
    target_id: str, interval: float, fast: float, t: float, pending: bool
) -> float:
    """When the next check of a target whose check was due (or ended) at `t` is due:
    `fast_due` while a transition is pending (and fast re-checks are on), else the next slot
    on its phase. What `claim_due` and the result writer do together."""
    if pending and fast > 0:
        return min(fast_due(t, interval, fast), slot_after(target_id, interval, t))
    return slot_after(target_id, interval, t)


def _route_interval(dialect: str) -> sa.ColumnElement:
    """`config.effective_interval` in SQL: an unusable value (the check reports it) is
    scheduled at the default interval."""
    raw = routes.c.health_check_interval
    usable = sa.and_(raw >= 1, raw <= MAX_INTERVAL)
    if dialect == "sqlite":  # type affinity keeps text, blobs and non-whole reals
        usable = sa.and_(sa.func.typeof(raw) == "integer", usable)
    every = sa.case((raw < MIN_INTERVAL, MIN_INTERVAL), else_=raw)
    return sa.case((usable, every), else_=DEFAULT_INTERVAL).label("interval")


@functools.cache
def _attention_queries(dialect: str) -> tuple[sa.Select, sa.Select]:
    """The route and stream queries of `_needing_attention`, built once per dialect (the
    dispatcher's idle look runs them every few seconds): `horizon` is now + lookahead."""
    horizon = sa.bindparam("horizon", type_=sa.Float)
    stream_interval = sa.bindparam("stream_interval", type_=sa.Float)
    interval = _route_interval(dialect)
    route_query = (
        sa.select(routes.c.id, interval, route_health_state.c.next_due_at)
        .select_from(routes.outerjoin(route_health_state, route_health_state.c.route_id == routes.c.id))
        .where(ROUTE_ELIGIBLE)
        .where(_needs_attention(route_health_state.c.next_due_at, horizon, interval))
    )
    stream_query = (
        sa.select(streams.c.id, stream_interval.label("interval"), stream_health_state.c.next_due_at)
        .select_from(streams.outerjoin(stream_health_state, stream_health_state.c.stream_id == streams.c.id))
        .where(STREAM_ELIGIBLE)
        .where(_needs_attention(stream_health_state.c.next_due_at, horizon, stream_interval))
    )
    return route_query, stream_query


def _needing_attention(conn: Connection, settings: HealthSettings, now: float) -> tuple[list, list]:
    """(route rows, stream rows) that are due before `now + lookahead`, or whose schedule
    must be set or re-timed: (id, interval, next_due_at)."""
    route_query, stream_query = _attention_queries(conn.dialect.name)
    stream_interval = float(max(settings.stream_interval, MIN_INTERVAL))
    params = {"horizon": now + settings.lookahead, "stream_interval": stream_interval}
    return conn.execute(route_query, params).all(), conn.execute(stream_query, params).all()


def nothing_due(engine: Engine, settings: HealthSettings, now: float) -> str | None:
    """Why a dispatch would do nothing now (no write, no lock), or None when it has work."""
    with engine.connect() as conn:
        route_rows, stream_rows = _needing_attention(conn, settings, now)
    return None if route_rows or stream_rows else "no route or stream due"


def claim_due(engine: Engine, settings: HealthSettings, now: float) -> list[Due]:
    """Claim every eligible route and stream due before `now + lookahead`, oldest first."""
    horizon = now + settings.lookahead
    claimed: list[Due] = []
    with engine.connect() as conn:  # read first: the write lock is held only to write
        route_rows, stream_rows = _needing_attention(conn, settings, now)
    writes = []
    for kind, table, key, rows in (
        ("route", route_health_state, "route_id", route_rows),
        ("stream", stream_health_state, "stream_id", stream_rows),
    ):
        updates = []
        for target_id, every, next_due in rows:
            every = float(every)
            if (
                next_due is None
                or next_due > now + every + settings.lookahead
                or next_due < now - every
            ):
                next_due = next_slot(target_id, every, now)  # new, re-timed, or long missed
            if next_due <= horizon:
                claimed.append(Due(kind, target_id, next_due))
                next_due = slot_after(target_id, every, next_due)  # after a fast check too
            updates.append({key: target_id, "next_due_at": next_due, "updated_at": now})
        writes.append((table, key, updates))
    # The dispatcher runs one at a time (its lease), so nothing moved these rows since the
    # read; the writes go in slices so that no transaction holds the lock for long.
    for table, key, updates in writes:
        for part in chunks(updates, WRITE_SLICE):
            with write_transaction(engine) as conn:
                conn.execute(upsert(conn, table, [key], ["next_due_at", "updated_at"]), part)
    claimed.sort(key=lambda d: d.due_at)
    return claimed


def _needs_attention(next_due, horizon, interval):
    """Never scheduled, due before the horizon (now + lookahead), or scheduled further
    ahead than one interval past it (the interval was shortened: re-time it)."""
    return sa.or_(next_due.is_(None), next_due <= horizon, next_due > horizon + interval)


def split(claimed: list[Due], size: int) -> list[list[Due]]:
    """Batches of at most `size`, each a contiguous run of due times."""
    return [claimed[i : i + size] for i in range(0, len(claimed), size)]
