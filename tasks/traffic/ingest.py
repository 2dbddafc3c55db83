"""The ingest job: new lines of Caddy's access log into `access_log`, in batches.

Each batch is one short write transaction holding the rows, the sequence numbers they
were given, and the read position just after the batch's last line, so a crash or a
restart never loses or duplicates a line. The position is updated compare-and-set: a
second ingest run that read the same lines cannot commit them again.

The same transaction counts the rows into the `traffic_metrics` minutes (and the
rollups) and moves the aggregate watermark, whenever that watermark is caught up: the
open minute the dashboard reads is never more than one ingest run behind the log, and
no one (ProxyOS's own access-log ring included) can delete a row before it is counted.
A backlog (after an upgrade, or a failed count) is counted in batches at the end of the
run. Each route written to is cut to its newest rows (`ring`): a batch is committed
only once the lines read after it reach a look-ahead, and its rows that those lines
push beyond the cap are counted in its transaction but never stored; at the end of the
run, the routes are trimmed. The reading side (`reader`: parsing, the look-ahead, the
limits of a run) runs in a second process while this one writes when there is much to
read (`parse_process`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import sqlite_cache, write_transaction
from db.schema import traffic_ingest_position as positions
from db.sql import insert_or_ignore
from tasks.outcome import NothingToDo

from . import ring, state
from .aggregate import aggregate, count_in_transaction
from .aggregate import pending as aggregate_pending
from .batches import Batch, Parsing
from .logfile import NotARegularFile, Plan, Position, Segment, plan, with_fingerprint
from .parse_process import batches_from_a_process, worth_a_process
from .reader import Limits, Reading, ready_batches
from .routing import HostMap, load_host_map
from .rows import insert_rows

log = logging.getLogger("proxyos.traffic.ingest")

DEFAULT_BATCH_LINES = 20_000
CACHE_MB = 64  # SQLite page cache while ingesting: a batch touches every route's pages
DEFAULT_KEEP_PER_ROUTE = 1000  # ProxyOS's access-log ring
# Lines read past a batch before it is committed, when there is a cap: a backlog's rows
# that the lines read after them push beyond the cap are counted and never stored. About
# 450 bytes of memory a line.
DEFAULT_LOOKAHEAD_LINES = 100_000
# A line whose `ts` is older than this, or further ahead of now than MAX_AHEAD_S, is
# malformed: a broken clock or a forged line, and far enough ahead it would break the
# buckets' arithmetic (milliseconds in a BIGINT).
MAX_AGE_S = 10 * 365 * 86400
MAX_AHEAD_S = 86400
DEFAULT_LIMITS = Limits()
MAX_UNMATCHED_SAMPLES = 5

BatchHook = Callable[[str, int], None]  # (event, batch number): progress, fault injection


class PositionMoved(state.ConcurrentChange):
    """Another ingest run committed lines of this file first; this batch was dropped."""


@dataclass
class Tally:
    lines: int = 0
    inserted: int = 0
    counted: int = 0  # rows counted into the buckets by this run
    trimmed: int = 0  # rows cut by the per-route cap: deleted, or counted and never stored
    malformed: int = 0
    unmatched: int = 0
    already_stored: int = 0
    batches: int = 0
    files: list[str] = field(default_factory=list)
    routes: set[str] = field(default_factory=set)  # routes written to
    unmatched_hosts: dict[str, int] = field(default_factory=dict)
    malformed_sample: str | None = None
    lost: str | None = None
    stopped: str | None = None  # why the run stopped before the end of the log

    def summary(self) -> dict:
        out = {
            "lines": self.lines,
            "inserted": self.inserted,
            "counted": self.counted,
            "trimmed": self.trimmed,
            "malformed": self.malformed,
            "unmatched": self.unmatched,
            "batches": self.batches,
            "files": self.files,
        }
        if self.already_stored:
            out["already_stored"] = self.already_stored
        if self.unmatched_hosts:
            hosts = sorted(self.unmatched_hosts.items())[:MAX_UNMATCHED_SAMPLES]
            out["unmatched_hosts"] = dict(hosts)
        if self.lost:
            out["lost"] = self.lost
        if self.malformed_sample:
            out["first_malformed"] = self.malformed_sample
        if self.stopped:
            out["stopped"] = self.stopped
        return out


_POSITION = sa.select(positions).where(positions.c.source == sa.bindparam("source"))  # built once (idle look)


def _load_position(conn: Connection, source: str) -> Position:
    row = conn.execute(_POSITION, {"source": source}).mappings().first()
    if row is None:
        return Position()
    return Position(
        device=row["device"],
        inode=row["inode"],
        offset=row["read_offset"],
        fingerprint=row["fingerprint"],
        fingerprint_len=row["fingerprint_len"],
    )


def _same(column: sa.Column, value: int | None):
    return sa.func.coalesce(column, -1) == (-1 if value is None else value)


def read_position(engine: Engine, source: Path | str) -> Position:
    with engine.connect() as conn:
        return _load_position(conn, str(source))


class Ingester:
    def __init__(
        self,
        engine: Engine,
        source: Path,
        hosts: HostMap,
        batch_lines: int,
        clock: Callable[[], float],
        on_batch: BatchHook | None,
        proxyos_rows_until: int = 0,
        keep_per_route: int = 0,
        lookahead_lines: int = 0,
        limits: Limits = DEFAULT_LIMITS,
        parse_in_process: bool | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.batch_lines = batch_lines
        self.clock = clock
        self.on_batch = on_batch
        self.tally = Tally()
        now = clock()
        parsing = Parsing(hosts, now - MAX_AGE_S, now + MAX_AHEAD_S, proxyos_rows_until)
        self.reading = Reading(parsing, batch_lines, keep_per_route, lookahead_lines, limits)
        self.parse_in_process = parse_in_process
        self.conn: Connection | None = None  # one connection for the run's batches

    def _commit(self, expected: Position, new: Position, batch: Batch) -> None:
        number = self.tally.batches + 1
        doomed = batch.doomed
        with write_transaction(self.engine, self.conn) as conn:
            moved = conn.execute(
                sa.update(positions)
                .where(
                    positions.c.source == str(self.source),
                    positions.c.read_offset == expected.offset,
                    _same(positions.c.inode, expected.inode),
                    _same(positions.c.device, expected.device),
                )
                .values(
                    device=new.device,
                    inode=new.inode,
                    read_offset=new.offset,
                    fingerprint=new.fingerprint,
                    fingerprint_len=new.fingerprint_len,
                    lines=positions.c.lines + batch.lines,
                    malformed=positions.c.malformed + batch.malformed,
                    unmatched=positions.c.unmatched + batch.unmatched,
                    updated_at=int(self.clock()),
                )
            ).rowcount
            if moved != 1:
                raise PositionMoved(f"another ingest run read {self.source} first; stopped")
            counted, unstored = self._store(conn, batch.rows, doomed) if batch.rows else (0, 0)
            if self.on_batch:
                self.on_batch("before_commit", number)
        self.tally.batches = number
        self.tally.inserted += len(batch.rows)
        self.tally.counted += counted
        self.tally.trimmed += unstored
        self.tally.routes.update(row[0] for row in batch.rows)
        if self.on_batch:
            self.on_batch("committed", number)

    @staticmethod
    def _store(conn: Connection, batch: list[tuple], doomed: list[bool]) -> tuple[int, int]:
        """Store the batch's rows and, when the watermark is caught up, count them and
        leave out the `doomed` ones (counted, never stored). Returns (rows counted, rows
        left out)."""
        low = state.allocate(conn, state.INGEST_SEQ, 0) - 1  # locks the counter: the last seq handed out
        if state.read(conn, state.AGGREGATED_SEQ) != low:  # a backlog: the end of the run counts it
            insert_rows(conn, low + 1, batch)
            state.allocate(conn, state.INGEST_SEQ, len(batch))
            return 0, 0
        rows, unstored = [], []
        for row, cut in zip(batch, doomed, strict=True):
            if cut:
                unstored.append((row[0], row[8], row[3], row[4], row[5], row[9]))
            else:
                rows.append(row)
        insert_rows(conn, low + 1, rows)
        state.allocate(conn, state.INGEST_SEQ, len(rows))
        counted = count_in_transaction(conn, low, low + len(rows), unstored)
        return counted, len(unstored)

    def _flush(self, committed: Position, segment: Segment, batch: Batch) -> Position:
        new = with_fingerprint(segment.path, replace(segment.start, offset=batch.end))
        if new == committed and not batch.lines:
            return committed
        self._commit(committed, new, batch)
        self.tally.lines += batch.lines
        self.tally.malformed += batch.malformed
        self.tally.unmatched += batch.unmatched
        self.tally.already_stored += batch.already_stored
        return new

    def run(self, committed: Position, todo: Plan) -> Tally:
        with self.engine.connect() as self.conn, sqlite_cache(self.conn, CACHE_MB):
            return self._run(committed, todo)

    def _run(self, committed: Position, todo: Plan) -> Tally:
        """Commit the batches as the reading side hands them on (`reader`): here, or
        from a second process when there is much to read."""
        segments = todo.segments
        in_process = worth_a_process(segments) if self.parse_in_process is None else self.parse_in_process
        read = batches_from_a_process if in_process else ready_batches
        with closing(read(segments, self.reading)) as batches:
            for batch in batches:
                segment = segments[batch.segment]
                if len(self.tally.files) <= batch.segment:
                    self.tally.files.append(str(segment.path))
                self._note_samples(batch)
                committed = self._flush(committed, segment, batch)
                self.tally.stopped = batch.stopped
        return self.tally

    def _note_samples(self, batch: Batch) -> None:
        tally = self.tally
        if tally.malformed_sample is None:
            tally.malformed_sample = batch.first_malformed
        hosts = tally.unmatched_hosts
        for host, count in batch.unmatched_hosts.items():
            if host in hosts or len(hosts) < MAX_UNMATCHED_SAMPLES:
                hosts[host] = hosts.get(host, 0) + count


def _trim(engine: Engine, routes: set[str], keep: int, started_at_seq: int) -> int:
    """Cut the routes this run wrote to, and those a stopped run wrote to and left
    untrimmed, to their newest `keep` rows."""
    if keep <= 0:
        return 0
    with engine.connect() as conn:
        trimmed_to, newest = state.read(conn, state.RING_SEQ), state.read(conn, state.INGEST_SEQ)
    if trimmed_to < started_at_seq:
        routes = routes | ring.routes_between(engine, trimmed_to, started_at_seq)
    deleted = ring.trim(engine, routes, keep)
    with write_transaction(engine) as conn:
        state.raise_to(conn, state.RING_SEQ, newest)
    return deleted


def nothing_new(engine: Engine, source: Path | str, keep_per_route: int = DEFAULT_KEEP_PER_ROUTE) -> str | None:
    """Why an ingest run would certainly do nothing now, found without a write or a lock:
    no log, or not a byte past the committed position, every row counted and (with a
    cap) every route trimmed. None when a run may have work (it finds out itself)."""
    source = Path(source)
    with engine.connect() as conn:
        committed = _load_position(conn, str(source))
        counters = state.read_all(conn)
    newest = counters.get(state.INGEST_SEQ, 0)
    behind = counters.get(state.AGGREGATED_SEQ, 0) < newest or (
        keep_per_route > 0 and counters.get(state.RING_SEQ, 0) < newest
    )
    if behind:
        return None
    try:
        todo = plan(source, committed)
        if not todo.segments and not todo.lost:
            return f"no access log at {source}"
        if todo.lost or len(todo.segments) != 1 or todo.segments[0].start != committed:
            return None
        return f"no new lines in {source}" if source.stat().st_size <= committed.offset else None
    except (OSError, NotARegularFile):  # the run says so
        return None


def ingest(
    engine: Engine,
    source: Path | str,
    *,
    batch_lines: int = DEFAULT_BATCH_LINES,
    clock: Callable[[], float] = time.time,
    on_batch: BatchHook | None = None,
    keep_per_route: int = DEFAULT_KEEP_PER_ROUTE,
    lookahead_lines: int = DEFAULT_LOOKAHEAD_LINES,
    limits: Limits = DEFAULT_LIMITS,
    parse_in_process: bool | None = None,
) -> dict:
    """Read every complete new line of `source` into `access_log` and count it into the
    buckets; keep each route written to at its newest `keep_per_route` rows (0: no cap).
    Lines are parsed in a second process when there are many (`parse_process`), or as
    `parse_in_process` says. Returns a summary."""
    source = Path(source)
    with engine.connect() as conn:
        proxyos_rows_until = state.proxyos_rows_until(conn)
        if proxyos_rows_until is None:  # the first ingest: measured once, without the write lock
            newest = state.newest_proxyos_row(conn)
    with write_transaction(engine) as conn:
        conn.execute(insert_or_ignore(conn, positions).values(source=str(source)))
        state.ensure(conn, state.INGEST_SEQ)
        state.ensure(conn, state.AGGREGATED_SEQ)
        state.ensure(conn, state.RING_SEQ)
        started_at_seq = state.read(conn, state.INGEST_SEQ)
        if proxyos_rows_until is None:
            proxyos_rows_until = state.record_proxyos_rows_until(conn, newest)
    with engine.connect() as conn:
        committed = _load_position(conn, str(source))
        hosts = load_host_map(conn)
    todo = plan(source, committed)
    if not todo.segments:
        raise NothingToDo(f"no access log at {source} (set PROXYOS_ACCESS_LOG)")
    if todo.lost:
        log.warning("traffic ingest: lines may be missing: %s", todo.lost)
    ingester = Ingester(engine, source, hosts, batch_lines, clock, on_batch, proxyos_rows_until, keep_per_route,
                        lookahead_lines, limits, parse_in_process)
    ingester.tally.lost = todo.lost
    tally = ingester.run(committed, todo)
    watermark, newest = aggregate_pending(engine)
    if watermark < newest:  # a backlog the batches could not count as they went
        tally.counted += aggregate(engine, clock=clock)["rows"]
    tally.trimmed += _trim(engine, tally.routes, keep_per_route, started_at_seq)
    if tally.malformed:
        log.warning(
            "traffic ingest: skipped %d malformed line(s); first: %s",
            tally.malformed, tally.malformed_sample,
        )
    if tally.stopped:
        log.warning("traffic ingest: stopped early: %s", tally.stopped)
    if tally.already_stored:
        log.info(
            "traffic ingest: skipped %d line(s) from before %s, which ProxyOS had stored itself",
            tally.already_stored,
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(proxyos_rows_until + 1)),
        )
    if tally.unmatched:
        log.info(
            "traffic ingest: %d request(s) for hosts that match no route, e.g. %s",
            tally.unmatched, ", ".join(sorted(tally.unmatched_hosts)),
        )
    return tally.summary()
