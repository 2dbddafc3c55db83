"""The periodic scheduler: enqueues each periodic job once per tick across every consumer.

A job with `every = N` seconds has ticks at multiples of N since the epoch. Whoever
moves `job_schedule.last_tick` forward first (a conditional UPDATE, atomic on SQLite and
PostgreSQL) enqueues that tick's run; every other consumer sees the row already moved.
A consumer that crashes after claiming loses at most that one tick; the next tick is
claimed afresh. At start-up a job whose current tick has not run yet runs at once. A
claimed tick of a job that can tell cheaply it has nothing to do (`Job.nothing_to_do`,
read-only) is not enqueued: an idle worker does not pass a task through the queue every
few seconds to find that out.
Huey's own periodic scheduler is not used: it wakes once a minute, and some of our jobs
run every few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.schema import job_schedule
from db.sql import insert_or_ignore

from .registry import Job

log = logging.getLogger("proxyos.scheduler")


def current_tick(every: float, now: float) -> int:
    return int(now // every * every)


_MOVE_TICK = (
    job_schedule.update()
    .where(job_schedule.c.job == sa.bindparam("job_name"), job_schedule.c.last_tick < sa.bindparam("tick"))
    .values(last_tick=sa.bindparam("tick"), updated_at=sa.bindparam("now"))
)  # built once: the scheduler claims every few seconds, and building costs more than running


_FIRST_TICK: dict[str, sa.Insert] = {}  # the first claim of a job: per dialect


def _first_tick_statement(conn) -> sa.Insert:
    statement = _FIRST_TICK.get(conn.dialect.name)
    if statement is None:
        values = {"job": sa.bindparam("job_name"), "last_tick": sa.bindparam("tick"), "updated_at": sa.bindparam("now")}
        statement = insert_or_ignore(conn, job_schedule).values(values).returning(job_schedule.c.job)
        _FIRST_TICK[conn.dialect.name] = statement
    return statement


def claim_ticks(engine: Engine, ticks: Mapping[str, int]) -> set[str]:
    """The jobs (of `ticks`: job -> tick) whose last tick this caller moved forward to the
    given one, or whose first row it wrote with it; one transaction for all of them."""
    now = time.time()
    claimed = set()
    with write_transaction(engine) as conn:
        for job, tick in ticks.items():
            params = {"job_name": job, "tick": tick, "now": now}
            if conn.execute(_MOVE_TICK, params).rowcount or (
                conn.execute(_first_tick_statement(conn), params).first() is not None
            ):
                claimed.add(job)
    return claimed


def claim_tick(engine: Engine, job: str, tick: int) -> bool:
    """True for the one caller that moves the job's last tick forward to `tick`."""
    return job in claim_ticks(engine, {job: tick})


class PeriodicScheduler:
    def __init__(
        self,
        engine: Engine,
        jobs: Iterable[Job],
        enqueue: Callable[[str], object],
        clock: Callable[[], float] = time.time,
        interval: float = 1.0,
        report: Callable[[str, Exception], None] | None = None,
        look: Callable[[Job], str | None] | None = None,
    ) -> None:
        self.engine = engine
        self.jobs = [job for job in jobs if job.every]
        self.enqueue = enqueue
        self.clock = clock
        self.interval = interval
        self.report = report  # records, once per tick, that a job's tick could not be claimed
        self._failed = False  # the last tick() could not schedule a job: try again in `interval`
        self.look = look  # runs a job's `nothing_to_do`
        self._seen: dict[str, int] = {}
        self._reported: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[str]:
        """Enqueue every job whose tick has come and that this process claimed."""
        now = self.clock()
        enqueued: list[str] = []
        self._failed = False
        due = {job.name: current_tick(job.every, now) for job in self.jobs}
        due = {name: tick for name, tick in due.items() if self._seen.get(name) != tick}
        if not due:
            return enqueued
        try:
            claimed = claim_ticks(self.engine, due)  # the jobs whose ticks fall together: one write
        except Exception as exc:  # the database is down: retry next second
            for name, tick in due.items():
                self._could_not_schedule(name, tick, exc)
            return enqueued
        for job in self.jobs:
            tick = due.get(job.name)
            if tick is None:
                continue
            try:
                if job.name in claimed:
                    idle = self._nothing_to_do(job)
                    if idle:
                        log.debug("job %s found nothing to do at tick %s: %s", job.name, tick, idle)
                    else:
                        task_id = self.enqueue(job.name)
                        enqueued.append(job.name)
                        log.debug("enqueued %s for tick %s (task %s)", job.name, tick, task_id)
                self._seen[job.name] = tick
            except Exception as exc:  # the queue is down: retry next second
                self._could_not_schedule(job.name, tick, exc)
        return enqueued

    def _could_not_schedule(self, job: str, tick: int, exc: Exception) -> None:
        self._failed = True
        log.warning("could not schedule %s: %s", job, exc)
        if self.report and self._reported.get(job) != tick:
            self._reported[job] = tick
            self.report(job, exc)

    def _nothing_to_do(self, job: Job) -> str | None:
        if self.look is None or job.nothing_to_do is None:
            return None
        try:
            return self.look(job)
        except Exception as exc:  # the database is down, say: the run meets it and records it
            log.debug("could not look whether %s has work (%s); enqueued it", job.name, exc)
            return None

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
            self._stop.wait(self._until_next_tick(time.time()))

    def _until_next_tick(self, now: float) -> float:
        """Seconds to sleep: until the soonest next tick of any job (idle, the thread
        wakes only when there is a tick to claim), or `interval` to retry a failure."""
        if self._failed or not self.jobs:
            return self.interval
        soonest = min(current_tick(job.every, now) + job.every for job in self.jobs)
        return max(soonest - now, 0.0)
