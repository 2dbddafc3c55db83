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
run, the routes are trimmed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import sqlite_cache, write_transaction
from db.sql import insert_or_ignore
from db.tables_traffic import traffic_ingest_position as positions
from tasks.outcome import Skipped

from . import ring, state
from .aggregate import aggregate, count_in_transaction
from .aggregate import pending as aggregate_pending
from .caddy import MalformedLine, parse_line
from .histogram import bin_of
from .logfile import MAX_LINE_BYTES, Plan, Position, Segment, plan, read_lines, with_fingerprint
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
SAMPLE_CHARS = 160
# A line whose `ts` is older than this, or further ahead of now than MAX_AHEAD_S, is
# malformed: a broken clock or a forged line, and far enough ahead it would break the
# buckets' arithmetic (milliseconds in a BIGINT).
MAX_AGE_S = 10 * 365 * 86400
MAX_AHEAD_S = 86400
BATCH_BYTES = 64 << 20  # a batch ends after this many bytes too (long lines)


@dataclass(frozen=True)
class Limits:
    """What one run reads at most; the next run goes on from there."""

    bytes: int = 1 << 30
    seconds: float = 300.0
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


@dataclass
class _Batch:
    rows: list[tuple] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)  # each row's number among its route's (ring.Doom)
    start: int = 0  # the offset of the batch's first line
    end: int = 0  # the offset just after the batch's last line
    lines: int = 0
    malformed: int = 0
    unmatched: int = 0
    already_stored: int = 0


def _load_position(conn: Connection, source: str) -> Position:
    row = conn.execute(sa.select(positions).where(positions.c.source == source)).mappings().first()
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
        limits: Limits = Limits(),
    ) -> None:
        self.engine = engine
        self.source = source
        self.hosts = hosts
        self.proxyos_rows_until = proxyos_rows_until
        self.batch_lines = batch_lines
        self.clock = clock
        self.on_batch = on_batch
        self.tally = Tally()
        self.doom = ring.Doom(keep_per_route)
        self.limits = limits
        now = clock()
        self.window = (now - MAX_AGE_S, now + MAX_AHEAD_S)  # the `ts` accepted
        self.lookahead_lines = lookahead_lines if keep_per_route > 0 else 0
        self.conn: Connection | None = None  # one connection for the run's batches

    def _commit(self, expected: Position, new: Position, batch: _Batch) -> None:
        number = self.tally.batches + 1
        doomed = self.doom.doomed(batch.rows, batch.numbers)  # worked out before taking the write lock
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

    def _parse(self, line: bytes | None, batch: _Batch, path: Path) -> None:
        batch.lines += 1
        start = batch.end  # where this line begins: just after the one before
        if line is None:
            self._malformed(batch, path, start, f"a line longer than {MAX_LINE_BYTES >> 20} MiB", b"")
            return
        if not line.strip():
            batch.lines -= 1
            return
        try:
            req = parse_line(line, *self.window)
        except MalformedLine as exc:
            self._malformed(batch, path, start, str(exc), line)
            return
        except Exception as exc:  # noqa: BLE001 - one line's fault is that line's, whatever it is
            self._malformed(batch, path, start, f"{type(exc).__name__}: {exc}", line)
            return
        if req.recorded_at <= self.proxyos_rows_until:
            batch.already_stored += 1  # ProxyOS stored this request itself, before the workers
            return
        route = self.hosts.route_for(req.host)
        if route is None:
            batch.unmatched += 1
            hosts = self.tally.unmatched_hosts
            if req.host in hosts or len(hosts) < MAX_UNMATCHED_SAMPLES:
                hosts[req.host] = hosts.get(req.host, 0) + 1
            return
        batch.rows.append((
            route, req.method, req.path, req.status_code, req.latency_ms, req.bytes_out,
            req.client_ip, req.user_agent, req.recorded_at, bin_of(req.latency_ms),
        ))
        batch.numbers.append(self.doom.saw(route, req.recorded_at))

    def _malformed(self, batch: _Batch, path: Path, start: int, why: str, line: bytes) -> None:
        batch.malformed += 1
        if self.tally.malformed_sample is None:
            text = line[:SAMPLE_CHARS].decode("utf-8", "replace")
            self.tally.malformed_sample = f"{path} byte {start}: {why[:SAMPLE_CHARS]}: {text!r}"

    def _flush(self, committed: Position, segment: Segment, batch: _Batch) -> Position:
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
        """Batches are committed in order, each once the lines read after it reach the
        look-ahead (or the segment ends): what they tell the ring (`ring.Doom`) spares
        storing rows that are bound to be deleted. Reading stops at a batch's end once
        the run has read `limits.bytes` or lasted `limits.seconds`; the next run goes on."""
        started, read = time.monotonic(), 0
        for segment in todo.segments:
            self.tally.files.append(str(segment.path))
            waiting: deque[_Batch] = deque()
            batch = _Batch(start=segment.start.offset, end=segment.start.offset)
            for line, offset in read_lines(segment):
                self._parse(line, batch, segment.path)
                batch.end = offset
                if batch.lines < self.batch_lines and batch.end - batch.start < BATCH_BYTES:
                    continue
                waiting.append(batch)
                read += batch.end - batch.start
                while waiting and _read_after_first(waiting) >= self.lookahead_lines:
                    committed = self._flush(committed, segment, waiting.popleft())
                batch = _Batch(start=offset, end=offset)
                if read >= self.limits.bytes or time.monotonic() - started >= self.limits.seconds:
                    self.tally.stopped = (f"read {read / 1e6:.0f} MB in {time.monotonic() - started:.0f} s, "
                                          "this run's limit; the next run goes on")
                    break
            waiting.append(batch)
            for pending in waiting:
                committed = self._flush(committed, segment, pending)
            if self.tally.stopped:
                break
        return self.tally


def _read_after_first(waiting: deque[_Batch]) -> int:
    """The lines read after the oldest waiting batch (a few batches: summed each time)."""
    return sum(batch.lines for batch in islice(waiting, 1, None))


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


def ingest(
    engine: Engine,
    source: Path | str,
    *,
    batch_lines: int = DEFAULT_BATCH_LINES,
    clock: Callable[[], float] = time.time,
    on_batch: BatchHook | None = None,
    keep_per_route: int = DEFAULT_KEEP_PER_ROUTE,
    lookahead_lines: int = DEFAULT_LOOKAHEAD_LINES,
    limits: Limits = Limits(),
) -> dict:
    """Read every complete new line of `source` into `access_log` and count it into the
    buckets; keep each route written to at its newest `keep_per_route` rows (0: no cap).
    Returns a summary."""
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
        raise Skipped(f"no access log at {source} (set PROXYOS_ACCESS_LOG)")
    if todo.lost:
        log.warning("traffic ingest: lines may be missing: %s", todo.lost)
    ingester = Ingester(engine, source, hosts, batch_lines, clock, on_batch, proxyos_rows_until, keep_per_route,
                        lookahead_lines, limits)
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
