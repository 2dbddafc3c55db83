"""The Huey app: storage from PROXYOS_QUEUE_URL, one Huey task per registered job.

A task message carries the job's options (ids and numbers) and nothing else; results
are not stored in the queue. What a run did is in `task_runs`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.api import Task, TaskWrapper
from huey.storage import SqliteStorage
from huey.utils import normalize_time

from .config import QueueConfig
from .registry import Job, JobContext
from .runner import record_skipped, run_job

QUEUE_NAME = "proxyos"
ON_DEMAND = "on_demand"  # a request made by someone (`enqueue`), not a periodic tick
ATTEMPT = "attempt"  # how often an on-demand request found its job busy so far
MAX_RETRY_DELAY_S = 30.0


class Doorbell:
    """Wakes this process's idle worker threads when it has put a task on the queue
    (a periodic tick, a job's follow-up, a retry falling due), so that they need not poll
    a queue that cannot tell them (SQLite) often to start those at once."""

    def __init__(self, keep: int = 8) -> None:
        self._bell = threading.Condition()
        self._closed = False
        # Rings no sleeper heard yet (a worker between its empty look and its sleep would
        # miss a bare notify and sleep its whole delay): each lets one sleep end at once.
        self._unheard = 0
        self._keep = keep  # at most this many are kept: one extra look per worker thread

    def ring(self) -> None:
        with self._bell:
            self._unheard = min(self._unheard + 1, self._keep)
            self._bell.notify()

    def close(self) -> None:
        """Wake every sleeper, now and from now on (the consumer is stopping)."""
        with self._bell:
            self._closed = True
            self._bell.notify_all()

    def sleep(self, seconds: float) -> None:
        with self._bell:
            if not self._closed and not self._unheard:
                self._bell.wait(seconds)
            if self._unheard:
                self._unheard -= 1


class NormalSyncStorage(SqliteStorage):
    """Huey's SQLite storage with the database's durability (db/engine.py): WAL with
    `synchronous = NORMAL`. A commit survives the process being killed; only a power cut
    or an OS crash may take back the last ones, as for the database itself. Huey's
    default (FULL) waits for the disk on every enqueue and every dequeue: ten times the
    cost of the rest of an enqueue here."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn


class RingingSqliteHuey(SqliteHuey):
    """A SQLite queue that rings its `doorbell` after each task it stores."""

    storage_class = NormalSyncStorage
    doorbell: Doorbell | None = None

    def enqueue(self, task):
        result = super().enqueue(task)
        if self.doorbell is not None:
            self.doorbell.ring()
        return result


def build_huey(queue: QueueConfig, create: bool = True) -> Huey:
    """The queue; with `create` False, a SQLite queue file that is not there yet is not
    made (an empty queue in memory stands for it: nothing is pending in it)."""
    if queue.kind == "redis":
        return RedisHuey(QUEUE_NAME, url=queue.location, results=False)
    path = Path(queue.location)
    if not create and not path.exists():
        return MemoryHuey(QUEUE_NAME, results=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create the file private before SQLite opens it: the queue is nobody else's business.
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    return RingingSqliteHuey(QUEUE_NAME, filename=str(path), results=False)


def retry_delay(attempt: int) -> float:
    """Seconds before an on-demand request that found its job busy tries again: 2, 4, 8 ...
    up to 30."""
    return min(2.0 ** (attempt + 1), MAX_RETRY_DELAY_S)


class JobQueue:
    """Registers every job as a Huey task and enqueues them by name."""

    def __init__(
        self,
        huey: Huey,
        jobs: Mapping[str, Job],
        context: Callable[[], JobContext],
        after_run: Callable[[JobContext, str], object] | None = None,
    ):
        self.huey = huey
        self.jobs = dict(jobs)
        self._context = context
        self._after_run = after_run  # called after each run this process made (not a refused one)
        self.tasks: dict[str, TaskWrapper] = {
            name: self._register(job) for name, job in self.jobs.items()
        }

    def _register(self, job: Job) -> TaskWrapper:
        context = self._context

        def execute(options: dict, task=None) -> None:
            ctx = context()
            task_id = task.id if task else None
            # This consumer's PROXYOS_JOBS decides, whoever enqueued the message.
            refused = ctx.settings.jobs.refusal(job.name)
            if refused:
                record_skipped(ctx, job.name, refused, task_id)
                return
            on_demand = bool(options.get(ON_DEMAND))
            delay = retry_delay(options.get(ATTEMPT, 0))
            result = run_job(ctx, job, options, task_id=task_id,
                             when_busy=f"this request is retried in {delay:g} s" if on_demand else None,
                             quiet_when_idle=not on_demand)
            if result.busy and on_demand:
                # A run already in progress may have begun before what this request is
                # for (rows that came in since): the request waits for its own run.
                retried = {**options, ATTEMPT: options.get(ATTEMPT, 0) + 1}
                self.enqueue(job.name, delay=delay, **retried)
            if self._after_run:
                self._after_run(ctx, job.name)

        execute.__name__ = f"job_{job.name}"
        return self.huey.task(name=job.name, context=True)(execute)

    def enqueue(self, job: str, delay: float | None = None, **options: Any) -> str:
        """Put one run of `job` on the queue. With `on_demand=True` (someone asked for it),
        a run that finds another one of the job in progress is retried until it runs."""
        return self.send(self.message(job, delay, **options))

    def message(self, job: str, delay: float | None = None, **options: Any) -> Task:
        """The task `enqueue` would put on the queue, not sent yet: its id is known before
        (the HTTP API records it in the same transaction as the request's audit row)."""
        if job not in self.tasks:
            raise KeyError(f"unknown job {job!r}")
        eta = normalize_time(None, delay, self.huey.utc) if delay else None
        # When it was first asked for: a job can tell that a request was already served.
        options = {"requested_at": round(time.time(), 3), **options}
        return self.tasks[job].task_class((options,), {}, eta=eta)

    def send(self, task: Task) -> str:
        """Put a `message` on the queue; its task id."""
        self.huey.enqueue(task)
        return task.id

    def depth(self) -> dict[str, int]:
        return {"pending": self.huey.pending_count(), "scheduled": self.huey.scheduled_count()}
