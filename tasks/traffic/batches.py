"""The lines of one access-log segment, parsed into batches of `access_log` rows.

Pure: it reads the file and nothing else, so it can run in another process while the
batches before are written (`parse_process`). A line that cannot be a row is counted in
its batch (malformed, for no route, or stored by ProxyOS before the workers took over);
the batch keeps the first malformed line's description and the hosts that matched no
route."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .caddy import MalformedLine, parse_line
from .histogram import bin_of
from .logfile import MAX_LINE_BYTES, Segment, read_lines
from .routing import HostMap

SAMPLE_CHARS = 160
BATCH_BYTES = 64 << 20  # a batch ends after this many bytes too (long lines)
MAX_UNMATCHED_HOSTS = 1000  # distinct hosts counted per batch (hostile logs have many)


@dataclass(frozen=True)
class Parsing:
    """How a run turns lines into rows."""

    hosts: HostMap
    earliest: float  # the `ts` accepted: a line outside [earliest, latest] is malformed
    latest: float
    proxyos_rows_until: int = 0  # lines up to this second ProxyOS stored itself


@dataclass
class Batch:
    start: int  # the offset of the batch's first line
    end: int  # the offset just after its last line
    rows: list[tuple] = field(default_factory=list)
    lines: int = 0
    malformed: int = 0
    unmatched: int = 0
    already_stored: int = 0
    first_malformed: str | None = None  # "path byte N: why: sample"
    unmatched_hosts: dict[str, int] = field(default_factory=dict)
    last: bool = False  # the segment's last batch
    # Set by the reader (`reader.ready_batches`):
    segment: int = 0  # which of the run's segments
    numbers: list[int] = field(default_factory=list)  # each row's among its route's (`ring.Doom.saw`)
    doomed: list[bool] = field(default_factory=list)  # each row's: beyond the cap, count only
    stopped: str | None = None  # the run's last batch: why it stopped reading here


def parse_batches(segment: Segment, parsing: Parsing, batch_lines: int) -> Iterator[Batch]:
    """The segment's lines from its start offset, `batch_lines` (or BATCH_BYTES) at a
    time; the last batch (`last`, possibly empty) ends where the complete lines end."""
    batch = Batch(start=segment.start.offset, end=segment.start.offset)
    for line, offset in read_lines(segment):
        _add(line, batch, parsing, segment.path)
        batch.end = offset
        if batch.lines >= batch_lines or batch.end - batch.start >= BATCH_BYTES:
            yield batch
            batch = Batch(start=offset, end=offset)
    batch.last = True
    yield batch


def _add(line: bytes | None, batch: Batch, parsing: Parsing, path: Path) -> None:
    batch.lines += 1
    start = batch.end  # where this line begins: just after the one before
    if line is None:
        _malformed(batch, path, start, f"a line longer than {MAX_LINE_BYTES >> 20} MiB", b"")
        return
    if not line.strip():
        batch.lines -= 1
        return
    try:
        req = parse_line(line, parsing.earliest, parsing.latest)
    except MalformedLine as exc:
        _malformed(batch, path, start, str(exc), line)
        return
    except Exception as exc:  # noqa: BLE001 - one line's fault is that line's, whatever it is
        _malformed(batch, path, start, f"{type(exc).__name__}: {exc}", line)
        return
    if req.recorded_at <= parsing.proxyos_rows_until:
        batch.already_stored += 1  # ProxyOS stored this request itself, before the workers
        return
    route = parsing.hosts.route_for(req.host)
    if route is None:
        batch.unmatched += 1
        hosts = batch.unmatched_hosts
        if req.host in hosts or len(hosts) < MAX_UNMATCHED_HOSTS:
            hosts[req.host] = hosts.get(req.host, 0) + 1
        return
    batch.rows.append((
        route, req.method, req.path, req.status_code, req.latency_ms, req.bytes_out,
        req.client_ip, req.user_agent, req.recorded_at, bin_of(req.latency_ms),
    ))


def _malformed(batch: Batch, path: Path, start: int, why: str, line: bytes) -> None:
    batch.malformed += 1
    if batch.first_malformed is None:
        text = line[:SAMPLE_CHARS].decode("utf-8", "replace")
        batch.first_malformed = f"{path} byte {start}: {why[:SAMPLE_CHARS]}: {text!r}"
