"""The periodic scheduler: enqueues each periodic job once per tick across every consumer.

A job with `every = N` seconds has ticks at multiples of N since the epoch. Whoever
moves `job_schedule.last_tick` forward first (a conditional UPDATE, atomic on SQLite and
PostgreSQL) enqueues that tick's run; every other consumer sees the row already moved.
A consumer that crashes after claiming loses at most that one tick; the next tick is
claimed afresh. At start-up a job whose current tick has not run yet runs at once.
Huey's own periodic scheduler is not used: it wakes once a minute, and some of our jobs
run every few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.schema import job_schedule
from db.sql import insert_or_ignore

from .registry import Job

log = logging.getLogger("proxyos.scheduler")


def current_tick(every: float, now: float) -> int:
    return int(now // every * every)


def claim_tick(engine: Engine, job: str, tick: int) -> bool:
    """True for the one caller that moves the job's last tick forward to `tick`."""
    now = time.time()
    with write_transaction(engine) as conn:
        conn.execute(insert_or_ignore(conn, job_schedule).values(job=job, last_tick=0, updated_at=now))
        moved = conn.execute(
            job_schedule.update()
            .where(job_schedule.c.job == job, job_schedule.c.last_tick < tick)
            .values(last_tick=tick, updated_at=now)
        ).rowcount
    return moved == 1


class PeriodicScheduler:
    def __init__(
        self,
        engine: Engine,
        jobs: Iterable[Job],
        enqueue: Callable[[str], object],
        clock: Callable[[], float] = time.time,
        interval: float = 1.0,
        report: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.engine = engine
        self.jobs = [job for job in jobs if job.every]
        self.enqueue = enqueue
        self.clock = clock
        self.interval = interval
        self.report = report  # records, once per tick, that a job's tick could not be claimed
        self._seen: dict[str, int] = {}
        self._reported: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[str]:
        """Enqueue every job whose tick has come and that this process claimed."""
        now = self.clock()
        enqueued = []
        for job in self.jobs:
            tick = current_tick(job.every, now)
            if self._seen.get(job.name) == tick:
                continue
            try:
                if claim_tick(self.engine, job.name, tick):
                    task_id = self.enqueue(job.name)
                    enqueued.append(job.name)
                    log.debug("enqueued %s for tick %s (task %s)", job.name, tick, task_id)
                self._seen[job.name] = tick
            except Exception as exc:  # the database or queue is down: retry next second
                log.warning("could not schedule %s: %s", job.name, exc)
                if self.report and self._reported.get(job.name) != tick:
                    self._reported[job.name] = tick
                    self.report(job.name, exc)
        return enqueued

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="proxyos-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval - (time.time() % self.interval))
