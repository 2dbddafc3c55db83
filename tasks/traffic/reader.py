"""The reading side of an ingest run: the planned segments of the log, parsed into
batches ready to commit, in order.

A batch is handed on once the lines read after it reach the look-ahead (or its segment
ends), with each row marked when those lines push it beyond the per-route cap
(`ring.Doom`: counted, never stored). Reading stops after a batch once the run has read
`Limits.bytes` or lasted `Limits.seconds`; that batch says so (`stopped`) and the next
run goes on from there. Reads files and nothing else, so it can run in another process
(`parse_process`) while the batches before are written.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from . import ring
from .batches import Batch, Parsing, parse_batches
from .logfile import Segment


@dataclass(frozen=True)
class Limits:
    """What one run reads at most; the next run goes on from there."""

    bytes: int = 1 << 30
    seconds: float = 300.0


@dataclass(frozen=True)
class Reading:
    """How a run reads: everything but the files."""

    parsing: Parsing
    batch_lines: int
    keep_per_route: int = 0  # the cap (0: none, and no look-ahead)
    lookahead_lines: int = 0
    limits: Limits = Limits()


def ready_batches(segments: Sequence[Segment], reading: Reading) -> Iterator[Batch]:
    """Every batch of the segments, in order, `segment` and `doomed` set."""
    doom = ring.Doom(reading.keep_per_route)
    lookahead = reading.lookahead_lines if reading.keep_per_route > 0 else 0
    limits = reading.limits
    started, read = time.monotonic(), 0
    for index, segment in enumerate(segments):
        waiting: deque[Batch] = deque()
        for batch in parse_batches(segment, reading.parsing, reading.batch_lines):
            batch.segment = index
            batch.numbers = [doom.saw(row[0], row[8]) for row in batch.rows]
            waiting.append(batch)
            read += batch.end - batch.start
            while waiting and _read_after_first(waiting) >= lookahead:
                yield _ready(waiting.popleft(), doom)
            if not batch.last and (read >= limits.bytes or time.monotonic() - started >= limits.seconds):
                batch.stopped = (f"read {read / 1e6:.0f} MB in {time.monotonic() - started:.0f} s, "
                                 "this run's limit; the next run goes on")
                break
        while waiting:
            yield _ready(waiting.popleft(), doom)
        if batch.stopped:
            return


def _ready(batch: Batch, doom: ring.Doom) -> Batch:
    batch.doomed = doom.doomed(batch.rows, batch.numbers)  # as the lines read so far tell
    batch.numbers = []
    return batch


def _read_after_first(waiting: deque[Batch]) -> int:
    """The lines read after the oldest waiting batch (a few batches: summed each time)."""
    return sum(batch.lines for batch in islice(waiting, 1, None))
