"""Wiring of `tasks.other_writers`: which tables to watch given the jobs that run here,
and a warning in the log when another writer shows up, at most once an hour per table
(per process).

A table is watched only while the job that writes it is enabled (`PROXYOS_JOBS`): with
`all,-traffic`, ProxyOS's collector writing `access_log` is the user's choice, not a
conflict.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from tasks.other_writers import OtherWriter, detect

from .job_selection import JobSelection
from .registry import JobContext

log = logging.getLogger("proxyos.other_writers")

# The jobs that write each watched table; the checks run after these.
WRITERS: dict[str, tuple[str, ...]] = {
    "access_log": ("ingest",),
    "traffic_metrics": ("ingest", "aggregate"),
    "health_checks": ("health-dispatch", "health-batch", "health"),
}
CHECK_EVERY_S = 300.0  # a table is looked at no more often than this, per process
WARN_EVERY_S = 3600.0


def watched_tables(selection: JobSelection, jobs: tuple[str, ...] | None = None) -> list[str]:
    """The tables written by an enabled job (of `jobs`, if given)."""
    return [
        table for table, writers in WRITERS.items()
        if any(selection.allows(job) and (jobs is None or job in jobs) for job in writers)
    ]


class WriterWatch:
    """Called after each run in the consumer; checks the tables that job writes now and
    then, and warns about another writer at most once every `warn_every` seconds a table."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        check_every: float = CHECK_EVERY_S,
        warn_every: float = WARN_EVERY_S,
    ) -> None:
        self.clock = clock
        self.check_every = check_every
        self.warn_every = warn_every
        self._checked: dict[str, float] = {}
        self._warned: dict[str, float] = {}

    def after_run(self, ctx: JobContext, job: str) -> list[OtherWriter]:
        now = self.clock()
        due = [
            table for table in watched_tables(ctx.settings.jobs, (job,))
            if now - self._checked.get(table, -math.inf) >= self.check_every
        ]
        if not due:
            return []
        for table in due:
            self._checked[table] = now
        try:
            found = detect(ctx.engine, due, now)
        except Exception as exc:  # a check must never fail or slow the job that ran
            log.warning("could not check %s for other writers (tried again in %g s): %s",
                        ", ".join(due), self.check_every, exc)
            return []
        for writer in found:
            if now - self._warned.get(writer.table, -math.inf) >= self.warn_every:
                self._warned[writer.table] = now
                log.warning("%s", writer.message())
        return found
