"""`proxyos-worker run`: the Huey consumer, plus the periodic scheduler."""

from __future__ import annotations

import logging
import signal
import socket
import time

from huey.consumer import Consumer

from .config import Settings
from .history import close_orphaned_runs
from .job_selection import enabled_jobs
from .leases import release_dead_leases
from .other_writers import WriterWatch
from .queue import JobQueue, build_huey
from .registry import JobContext, discover
from .runner import record_failure
from .scheduler import PeriodicScheduler
from .startup import open_database

log = logging.getLogger("proxyos.consumer")


class GracefulConsumer(Consumer):
    """SIGTERM and SIGINT both stop gracefully: no new task starts, running ones get
    `shutdown_timeout` seconds to finish. A second signal stops at once."""

    def __init__(self, *args, on_stop=None, **kwargs) -> None:
        super().__init__(*args, graceful_signal="TERM", **kwargs)
        self._signal_actions[signal.SIGINT] = (False, True)
        self._on_stop = on_stop

    def start(self) -> None:
        # Huey installs its handlers at the end of start(); a SIGTERM arriving while the
        # threads start would kill the process outright instead of stopping it gracefully.
        self._set_signal_handlers()
        super().start()

    def stop(self, graceful: bool = False) -> None:
        if self._on_stop:
            self._on_stop()
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
    released = release_dead_leases(engine, socket.gethostname())
    if released:
        log.warning("released the job leases of killed workers: %s", ", ".join(released))
    engine.dispose()
    queue, ctx = build_queue(settings)
    def unscheduled(job: str, error: Exception) -> None:
        record_failure(ctx, job, "could not schedule this run", error)

    scheduler = PeriodicScheduler(ctx.engine, enabled_jobs(queue.jobs.values(), settings.jobs), queue.enqueue,
                                  report=unscheduled)
    consumer = GracefulConsumer(
        queue.huey,
        workers=workers,
        periodic=False,
        worker_type="thread",
        shutdown_timeout=settings.shutdown_timeout_s,
        max_delay=1.0,  # an idle worker polls at least every second (Huey's default: 10 s)
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
