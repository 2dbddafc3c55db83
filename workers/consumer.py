"""`proxyos-worker run`: the Huey consumer, plus the periodic scheduler."""

from __future__ import annotations

import logging
import signal
import socket
import time

from huey.consumer import Consumer, Worker

from db.leases import JOB_LEASES

from .config import Settings
from .history import close_orphaned_runs
from .job_selection import enabled_jobs
from .other_writers import WriterWatch
from .queue import Doorbell, JobQueue, RingingSqliteHuey, build_huey
from .registry import JobContext, discover
from .runner import record_failure
from .scheduler import PeriodicScheduler
from .startup import open_database

log = logging.getLogger("proxyos.consumer")


class DoorbellWorker(Worker):
    """A worker thread that, between empty looks at a SQLite queue, sleeps until this
    process stores a task (its `Doorbell` rings) or `max_delay` passes: what this
    process schedules starts at once, and an idle worker rarely looks. A task another
    process enqueues (`proxyos-worker enqueue`) starts within `max_delay`."""

    def __init__(self, *args, doorbell: Doorbell, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.doorbell = doorbell

    def sleep(self) -> None:
        self.delay = min(self.delay, self.max_delay)
        self.doorbell.sleep(self.delay)
        self.delay *= self.backoff


class GracefulConsumer(Consumer):
    """SIGTERM and SIGINT both stop gracefully: no new task starts, running ones get
    `shutdown_timeout` seconds to finish. A second signal stops at once."""

    def __init__(self, *args, on_stop=None, doorbell: Doorbell | None = None, **kwargs) -> None:
        self._doorbell = doorbell  # before Huey's constructor: it creates the workers
        super().__init__(*args, graceful_signal="TERM", **kwargs)
        self._signal_actions[signal.SIGINT] = (False, True)
        self._on_stop = on_stop

    def _create_worker(self) -> Worker:
        if self._doorbell is None:
            return super()._create_worker()
        return DoorbellWorker(huey=self.huey, stop_flag=self.stop_flag, default_delay=self.default_delay,
                              max_delay=self.max_delay, backoff=self.backoff, max_tasks=self.max_tasks,
                              doorbell=self._doorbell)

    def start(self) -> None:
        # Huey installs its handlers at the end of start(); a SIGTERM arriving while the
        # threads start would kill the process outright instead of stopping it gracefully.
        self._set_signal_handlers()
        super().start()

    def stop(self, graceful: bool = False) -> None:
        if self._on_stop:
            self._on_stop()
        if self._doorbell is not None:  # sleeping workers see the stop flag now, not at their next look
            self.stop_flag.set()
            self._doorbell.close()
        super().stop(graceful=graceful)


def build_queue(
    settings: Settings, context: JobContext | None = None, create: bool = True
) -> tuple[JobQueue, JobContext]:
    """The job queue and the context its tasks run with (which can enqueue follow-ups);
    `create` False for readers: a SQLite queue that is not there yet stays so."""
    jobs = discover()
    for job in enabled_jobs(jobs.values(), settings.jobs):  # a disabled job's settings do not matter here
        if job.check_settings:
            job.check_settings(settings.env)
    holder: dict[str, JobQueue] = {}
    ctx = context or JobContext(
        settings, enqueue=lambda job, delay=None, **o: holder["q"].enqueue(job, delay, **o), buffered_history=True
    )
    queue = JobQueue(build_huey(settings.queue, create), jobs, context=lambda: ctx, after_run=WriterWatch().after_run)
    holder["q"] = queue
    return queue, ctx


def run(settings: Settings, workers: int = 4, periodic: bool = True) -> None:
    engine = open_database(settings)
    closed = close_orphaned_runs(engine, socket.gethostname(), time.time())
    if closed:
        log.warning("%d run(s) of workers that were killed are marked as errors in task_runs", closed)
    released = JOB_LEASES.release_dead(engine, socket.gethostname())
    if released:
        log.warning("released the job leases of killed workers: %s", ", ".join(released))
    engine.dispose()
    queue, ctx = build_queue(settings)
    def unscheduled(job: str, error: Exception) -> None:
        record_failure(ctx, job, "could not schedule this run", error)

    scheduler = PeriodicScheduler(ctx.engine, enabled_jobs(queue.jobs.values(), settings.jobs), queue.enqueue,
                                  report=unscheduled, look=lambda job: job.nothing_to_do(ctx))
    doorbell = None
    if isinstance(queue.huey, RingingSqliteHuey):
        doorbell = queue.huey.doorbell = Doorbell(keep=workers)
    consumer = GracefulConsumer(
        queue.huey,
        doorbell=doorbell,
        workers=workers,
        periodic=False,
        worker_type="thread",
        shutdown_timeout=settings.shutdown_timeout_s,
        max_delay=settings.queue_poll_s,  # how late another process's request may start (SQLite)
        on_stop=scheduler.stop,
    )
    if periodic:
        scheduler.start()
        log.info("periodic jobs: %s", ", ".join(f"{j.name} every {j.every:g}s" for j in scheduler.jobs) or "none")
        if settings.jobs.disabled:
            log.info("disabled by PROXYOS_JOBS=%s: %s", settings.jobs.spec, ", ".join(sorted(settings.jobs.disabled)))
    try:
        consumer.run()
    finally:
        scheduler.stop()
        ctx.close()
