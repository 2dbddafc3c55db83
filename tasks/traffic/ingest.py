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
run. Each route written to is cut to its newest rows (`ring`): in the batch's
transaction, the rows beyond the cap within the batch alone; at the end of the run, the
rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from .logfile import Plan, Position, Segment, plan, read_lines, with_fingerprint
from .routing import HostMap, load_host_map
from .rows import insert_rows

log = logging.getLogger("proxyos.traffic.ingest")

DEFAULT_BATCH_LINES = 20_000
CACHE_MB = 64  # SQLite page cache while ingesting: a batch touches every route's pages
DEFAULT_KEEP_PER_ROUTE = 1000  # ProxyOS's access-log ring
SAMPLE_CHARS = 160
MAX_UNMATCHED_SAMPLES = 5

BatchHook = Callable[[str, int], None]  # (event, batch number): progress, fault injection


class PositionMoved(state.ConcurrentChange):
    """Another ingest run committed lines of this file first; this batch was dropped."""


@dataclass
class Tally:
    lines: int = 0
    inserted: int = 0
    counted: int = 0  # rows counted into the buckets by this run
    trimmed: int = 0  # rows deleted by the per-route cap
    malformed: int = 0
    unmatched: int = 0
    already_stored: int = 0
    batches: int = 0
    files: list[str] = field(default_factory=list)
    routes: set[str] = field(default_factory=set)  # routes written to
    unmatched_hosts: dict[str, int] = field(default_factory=dict)
    malformed_sample: str | None = None
    lost: str | None = None

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
        return out


@dataclass
class _Batch:
    rows: list[tuple] = field(default_factory=list)
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
    ) -> None:
        self.engine = engine
        self.source = source
        self.hosts = hosts
        self.proxyos_rows_until = proxyos_rows_until
        self.batch_lines = batch_lines
        self.clock = clock
        self.on_batch = on_batch
        self.tally = Tally()
        self.keep_per_route = keep_per_route
        self.conn: Connection | None = None  # one connection for the run's batches

    def _commit(self, expected: Position, new: Position, batch: _Batch) -> None:
        number = self.tally.batches + 1
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
            counted = trimmed = 0
            if batch.rows:
                first = state.allocate(conn, state.INGEST_SEQ, len(batch.rows))
                insert_rows(conn, first, batch.rows)
                if state.read(conn, state.AGGREGATED_SEQ) == first - 1:
                    counted = count_in_transaction(conn, first - 1, first + len(batch.rows) - 1)
                    trimmed = ring.delete_seqs(conn, ring.overflow(batch.rows, first, self.keep_per_route))
            if self.on_batch:
                self.on_batch("before_commit", number)
        self.tally.batches = number
        self.tally.inserted += len(batch.rows)
        self.tally.counted += counted
        self.tally.trimmed += trimmed
        self.tally.routes.update(row[0] for row in batch.rows)
        if self.on_batch:
            self.on_batch("committed", number)

    def _parse(self, line: bytes, offset: int, batch: _Batch) -> None:
        batch.lines += 1
        if not line.strip():
            batch.lines -= 1
            return
        try:
            req = parse_line(line)
        except MalformedLine as exc:
            batch.malformed += 1
            if self.tally.malformed_sample is None:
                text = line[:SAMPLE_CHARS].decode("utf-8", "replace")
                self.tally.malformed_sample = f"{exc} at byte {offset - len(line) - 1}: {text!r}"
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

    def _flush(self, committed: Position, segment: Segment, offset: int, batch: _Batch) -> Position:
        new = with_fingerprint(segment.path, replace(segment.start, offset=offset))
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
        for segment in todo.segments:
            self.tally.files.append(str(segment.path))
            batch, offset = _Batch(), segment.start.offset
            for line, offset in read_lines(segment):  # noqa: B007 - offset used after the loop
                self._parse(line, offset, batch)
                if batch.lines >= self.batch_lines:
                    committed = self._flush(committed, segment, offset, batch)
                    segment = Segment(segment.path, committed, segment.complete)
                    batch = _Batch()
            committed = self._flush(committed, segment, offset, batch)
        return self.tally


def ingest(
    engine: Engine,
    source: Path | str,
    *,
    batch_lines: int = DEFAULT_BATCH_LINES,
    clock: Callable[[], float] = time.time,
    on_batch: BatchHook | None = None,
    keep_per_route: int = DEFAULT_KEEP_PER_ROUTE,
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
    ingester = Ingester(engine, source, hosts, batch_lines, clock, on_batch, proxyos_rows_until, keep_per_route)
    ingester.tally.lost = todo.lost
    tally = ingester.run(committed, todo)
    watermark, newest = aggregate_pending(engine)
    if watermark < newest:  # a backlog the batches could not count as they went
        tally.counted += aggregate(engine, clock=clock)["rows"]
    tally.trimmed += ring.trim(engine, tally.routes, keep_per_route)
    if tally.malformed:
        log.warning(
            "traffic ingest: skipped %d malformed line(s); first: %s",
            tally.malformed, tally.malformed_sample,
        )
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
