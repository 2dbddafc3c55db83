"""The job registry: each job is a name, a plain function from `tasks/`, an optional
period, and the options it takes on demand.

Job modules live in `workers/jobs/`, one per area; each declares `JOBS`, a list of `Job`,
and `workers.jobs.AREAS` lists the areas. Adding a job means adding it to its area's
`JOBS`: the CLI, the queue and the scheduler find it there.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from db.engine import create_engine

from .config import Settings
from .history import RunHistory

log = logging.getLogger("proxyos.jobs")


@dataclass(frozen=True)
class Option:
    """One on-demand option of a job, e.g. `--route ID`; values travel in task messages,
    so they are ids and numbers, never secrets."""

    flag: str
    help: str
    type: Callable[[str], Any] = str
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


class JobContext:
    """What a job adapter gets: settings, a shared engine, a clock, and a way to enqueue
    follow-up work (on the queue in the consumer; run inline by `run-once`).

    `JobContext(settings)` can enqueue nothing; `inline` runs what a job enqueues at once;
    the consumer passes its queue's `enqueue`. `engine` shares one a caller already has."""

    def __init__(
        self,
        settings: Settings,
        enqueue: Callable[..., str | None] | None = None,
        clock: Callable[[], float] = time.time,
        buffered_history: bool = False,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._enqueue = enqueue
        self._buffered_history = buffered_history
        self._engine = engine
        self._history: RunHistory | None = None
        self._opening = threading.Lock()  # the consumer's worker threads share one context
        self._inline = False
        self._wakes: dict[str, float] = {}  # job -> when a delayed nudge asked it to run

    @classmethod
    def inline(cls, settings: Settings, run: Callable[[JobContext, str, Mapping[str, Any]], str | None]) -> JobContext:
        """A context whose follow-up work runs at once, in this process: `run(ctx, job,
        options)` returns the follow-up run's id."""
        ctx = cls(settings)
        ctx._enqueue = lambda job, delay=None, **options: run(ctx, job, options)
        ctx._inline = True
        return ctx

    @property
    def engine(self) -> Engine:
        """The database, opened on first use (and closed by `close`)."""
        with self._opening:
            if self._engine is None:
                self._engine = create_engine(self.settings.database_url, busy_timeout_ms=self.settings.busy_timeout_ms)
            return self._engine

    @property
    def history(self) -> RunHistory:
        """Where runs are recorded; buffered in the consumer (see workers.history)."""
        engine = self.engine
        with self._opening:
            if self._history is None:
                self._history = RunHistory(engine, buffered=self._buffered_history)
            return self._history

    def enqueue(self, job: str, delay: float | None = None, **options: Any) -> str | None:
        if self._enqueue is None:
            raise RuntimeError("this context cannot enqueue jobs")
        return self._enqueue(job, delay=delay, **options)

    def nudge(self, job: str, delay: float | None = None) -> None:
        """Ask for a run of periodic `job` before its next tick (now, or in `delay` s),
        when this process runs that job: what happened may be work for it. A nudge is a
        hint, never needed for correctness: one that cannot be sent is left to the tick,
        `run-once` (no ticks to wait for) ignores them, and a delayed nudge is not sent
        twice for the same time."""
        if self._enqueue is None or self._inline or not self.settings.jobs.allows(job):
            return
        if delay:
            wake = round(self.clock() + delay)
            with self._opening:
                if self.clock() < self._wakes.get(job, 0.0) <= wake:
                    return  # an earlier (or the same) wake-up is already on the queue
                self._wakes[job] = wake
        try:
            self._enqueue(job, delay=delay)
        except Exception as exc:  # the queue is busy or down: the job's tick does it
            log.warning("could not nudge %s (%s); it runs at its next tick", job, exc)

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
        if self._engine is not None:
            self._engine.dispose()


@dataclass(frozen=True)
class Job:
    name: str
    help: str
    run: Callable[[JobContext, Mapping[str, Any]], Mapping[str, Any] | None]
    every: float | None = None  # seconds between periodic runs; None: on demand only
    options: tuple[Option, ...] = ()
    exclusive: bool = True  # at most one run at a time across every consumer
    lease_seconds: float = 30.0  # renewed while the run lasts; how long a killed run blocks the next
    example: str = ""
    status: Callable[[JobContext], Mapping[str, Any]] | None = None
    check_settings: Callable[[Mapping[str, str]], Any] | None = None
    render: Callable[[Mapping[str, Any]], str] | None = None  # run-once's text output
    hidden: bool = field(default=False)  # internal fan-out tasks: not offered on the CLI
    area: str = ""  # its area in workers.jobs.AREAS (health, certs, traffic, backup, alerts)
    feeds: tuple[str, ...] = ()  # jobs it hands its work to: PROXYOS_JOBS keeps them together
    # The scheduler's read-only look once it has claimed a tick: why a run would certainly
    # find nothing to do (the tick is then not enqueued at all), or None to enqueue it.
    nothing_to_do: Callable[[JobContext], str | None] | None = None


def discover() -> dict[str, Job]:
    """Every job of every area (`workers.jobs.AREAS`), by name."""
    from .jobs import AREAS  # the job modules import this one

    found: dict[str, Job] = {}
    for area, jobs in AREAS.items():
        for job in jobs:
            if job.name in found:
                raise RuntimeError(f"job {job.name!r} is defined twice")
            found[job.name] = dataclasses.replace(job, area=job.area or area)
    return found


def render_pairs(summary: Mapping[str, Any]) -> str:
    """A run's summary as `key: value, ...` (run-once's text output of simple jobs)."""
    return ", ".join(f"{k}: {v}" for k, v in summary.items())
