"""Keeping SQLite's WAL short while a prune deletes, without holding anyone up.

Every batch a prune commits adds its dirty pages to the WAL. In the pause after each
batch a PASSIVE checkpoint copies them back into the database: it does not take the
write lock, and doing it here keeps that work (and its fsyncs) out of the dashboard's
commits, where SQLite's auto-checkpoint would otherwise run it.

A fully copied WAL is reused from its start by the next write transaction, but only if
nothing was added since it was copied. A dashboard that waited for a batch commits
during the pause, while the copy runs, and then the next batch appends instead: the file
grows by every batch, to hundreds of MB in a million-row prune. So once the WAL holds
more than a limit, the prune copies it back a second time just before its next batch,
which then starts the WAL again (no lock needed). Should that race be lost again and
again, past twice the limit a RESTART checkpoint makes sure; that holds the write lock
for about 15 ms, and the prune pauses again after it. The file is truncated once, at
the end: truncating takes the lock for a time that grows with the file's size.

RESTART and TRUNCATE wait for readers while holding the write lock, through the busy
handler; they run here with none (busy_timeout 0), so a long read elsewhere makes them
give up at once (and try again later) instead of holding up every writer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

WAL_LIMIT_MB = 16  # start the WAL again once it holds more than this, during a prune
RESTART_ATTEMPTS = 15  # about 1 ms apart: within one pause


class WalKeeper:
    """Copies the WAL of `engine`'s SQLite file back after each batch and, once it holds
    more than `limit_mb`, gets it started again; on a connection of its own. A context
    manager."""

    def __init__(self, engine: Engine, limit_mb: float = WAL_LIMIT_MB) -> None:
        self.engine = engine
        self.limit_bytes = limit_mb * 1_000_000
        self.restarts = 0
        self.longest_restart_ms = 0.0

    def __enter__(self) -> WalKeeper:
        self._connection = _without_busy_wait(self.engine)
        self._raw = self._connection.__enter__()
        self.page_size = self._raw.execute("PRAGMA page_size").fetchone()[0]
        return self

    def __exit__(self, *exc) -> None:
        self._connection.__exit__(*exc)

    def copy(self) -> int:
        """A PASSIVE checkpoint; returns the frames in the WAL if it copied them all, else
        -1 (another connection was checkpointing, or a reader still needs some of them):
        then a RESTART would copy the rest while holding the write lock."""
        _, frames, copied = self._raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return frames if copied == frames else -1

    def prepare_reuse(self, frames: int) -> bool:
        """Called just before the next batch with what `copy` found: past the limit, make
        that batch start the WAL again. True if that took the write lock (RESTART)."""
        size = frames * self.page_size
        if size <= self.limit_bytes:
            return False
        if size <= 2 * self.limit_bytes:
            self.copy()  # what a writer added during the pause: then the batch reuses the WAL
            return False
        self.restart()
        return True

    def restart(self) -> bool:
        """A RESTART checkpoint: copies what a writer added since `copy` (holding the
        write lock) so that the next writer starts the WAL from its beginning. It answers
        busy at once while another connection's auto-checkpoint runs or while readers
        are on the WAL, so it is tried a few times, about a millisecond apart."""
        for _attempt in range(RESTART_ATTEMPTS):
            started = time.perf_counter()
            busy = self._raw.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
            took_ms = (time.perf_counter() - started) * 1000
            self.longest_restart_ms = max(self.longest_restart_ms, took_ms)
            if not busy:
                self.restarts += 1
                return True
            time.sleep(0.001)
        return False


def truncate_wal(engine: Engine, give_up_after_s: float = 5.0) -> tuple[int, int, int]:
    """Fold the WAL into the database and truncate it; returns SQLite's (busy, frames in
    the WAL, frames checkpointed). A PASSIVE pass first does the copying without holding
    the write lock, so TRUNCATE holds it only briefly. TRUNCATE answers busy at once while
    another connection's (auto-)checkpoint runs, so it is tried again for a few seconds."""
    with _without_busy_wait(engine) as raw:
        deadline = time.monotonic() + give_up_after_s
        while True:
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            row = tuple(raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
            if row[0] == 0 or time.monotonic() >= deadline:
                return row
            time.sleep(0.01)


@contextmanager
def _without_busy_wait(engine: Engine) -> Iterator:
    """A raw pooled connection with busy_timeout 0, restored before it goes back."""
    raw = engine.raw_connection()
    before = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    try:
        raw.execute("PRAGMA busy_timeout = 0")
        yield raw
    finally:
        try:
            raw.execute(f"PRAGMA busy_timeout = {int(before)}")
        finally:
            raw.close()
