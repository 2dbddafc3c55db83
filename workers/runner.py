"""Run one job and record it in `task_runs`: the one place that does so for every job,
whether it came from the queue, the scheduler or `run-once`."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from db.engine import describe_url
from db.errors import explain
from db.leases import JOB_LEASES, Owner
from db.problem import Problem
from db.sql import new_id
from tasks.outcome import NothingToDo, Skipped
from tasks.redaction import redact

from .registry import Job, JobContext

log = logging.getLogger("proxyos.runner")
MAX_ERROR_CHARS = 2000
LEASE_POLL_S = 0.5  # how often a run waiting for a lease tries again
LOGGED_SUMMARY_CHARS = 300

# A run's status in `task_runs` (IDLE: a periodic run that found nothing to do, not recorded)
RUNNING, OK, ERROR, SKIPPED, IDLE = "running", "ok", "error", "skipped", "idle"

WaitHook = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    run_id: str
    job: str
    status: str  # OK | ERROR | SKIPPED | IDLE
    duration_ms: int
    summary: Mapping[str, Any]
    error: str | None
    busy: bool = False  # skipped because another run of the job held its lease

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "summary": dict(self.summary),
            "error": self.error,
        }


def error_message(exc: BaseException, where: str | None = None) -> str:
    """What a person reads in `task_runs.error`: the exception's own words, scrubbed;
    for a database that cannot be used (full, read-only, corrupt), what to do about it."""
    if isinstance(exc, sa.exc.DBAPIError):  # the driver's words, without SQLAlchemy's noise
        hint = explain(exc, where) if where else None
        if hint:
            return redact(hint)[:MAX_ERROR_CHARS]
        exc = exc.orig
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, Problem):  # not written for the operator: say what it is
        text = f"{type(exc).__name__}: {text}"
    return redact(text)[:MAX_ERROR_CHARS]


@dataclass
class Run:
    """One run of a job as it passes through the steps of `run_job`."""

    ctx: JobContext
    job: Job
    options: dict[str, Any]
    task_id: str | None
    run_id: str = field(default_factory=new_id)
    started: float = field(default_factory=time.time)

    @property
    def owner(self) -> Owner:
        """The run's lease owner, `host:pid/run_id`: a consumer starting on this host can
        tell a dead holder's lease."""
        return Owner.here(self.run_id)

    finished_at: float | None = None

    def refused(self, status: str, error: str, busy: bool = False) -> RunResult:
        """The run did not start (its job's lease, say)."""
        return RunResult(self.run_id, self.job.name, status, 0, {}, error, busy)

    def ended(self, status: str, error: str | None = None, summary: Mapping[str, Any] | None = None) -> RunResult:
        self.finished_at = time.time()
        duration_ms = int((self.finished_at - self.started) * 1000)
        return RunResult(self.run_id, self.job.name, status, duration_ms, dict(summary or {}), error)


Proceed = Callable[[], RunResult]
Step = Callable[[Run, Proceed], RunResult]


def run_job(
    ctx: JobContext,
    job: Job,
    options: Mapping[str, Any] | None = None,
    task_id: str | None = None,
    *,
    wait_for_lease: float = 0.0,
    on_wait: WaitHook | None = None,
    when_busy: str | None = None,
    quiet_when_idle: bool = False,
) -> RunResult:
    """Run `job` once and record the run. An exclusive job whose lease another run holds is
    `skipped`, unless that run ends within `wait_for_lease` seconds (`on_wait` is told
    whom it waits for); `when_busy` is added to a skipped run's record (what becomes of
    the request). With `quiet_when_idle` (a periodic run), a run that finds nothing to do
    (`NothingToDo`) is not recorded, if its start was not written yet (`IDLE`).

    The run passes through these steps in order, each wrapping the rest."""
    steps: list[Step] = []
    if job.exclusive:
        steps.append(LeaseStep(wait_for_lease, on_wait, when_busy))
    steps.append(HistoryStep(quiet_when_idle))
    run = Run(ctx, job, dict(options or {}), task_id)
    return _through(steps, run)


def _through(steps: list[Step], run: Run) -> RunResult:
    if not steps:
        return _execute(run)
    first, rest = steps[0], steps[1:]
    return first(run, lambda: _through(rest, run))


@dataclass(frozen=True)
class LeaseStep:
    """At most one run of an exclusive job at a time: take the job's lease (waiting up to
    `wait_for_lease` seconds for the run that holds it), keep it while the run goes on.
    A run that cannot have it is recorded `skipped`, naming the holder."""

    wait_for_lease: float
    on_wait: WaitHook | None
    when_busy: str | None

    def __call__(self, run: Run, proceed: Proceed) -> RunResult:
        engine, job = run.ctx.engine, run.job
        try:
            leased = JOB_LEASES.take(engine, job.name, run.owner, job.lease_seconds)
            if not leased and self.wait_for_lease > 0:
                leased = self._wait(run)
                run.started = time.time()
            why_skipped = None if leased else _busy(engine, job) + (f"; {self.when_busy}" if self.when_busy else "")
        except Exception as exc:  # the database is unreachable: record it (later, if buffered)
            error = f"could not take the job's lease: {error_message(exc, describe_url(engine))}"
            log.error("job %s did not run: %s", job.name, error)
            return _record_finished(run.ctx, run.refused(ERROR, error), run.task_id, run.started)
        if not leased:
            return _record_finished(run.ctx, run.refused(SKIPPED, why_skipped, busy=True), run.task_id, run.started)
        with JOB_LEASES.kept(engine, job.name, run.owner, job.lease_seconds):
            return proceed()

    def _wait(self, run: Run) -> bool:
        """Poll for the lease until `wait_for_lease` seconds pass: the run holding it is
        another process's, with nothing to await but its row going away."""
        engine, job = run.ctx.engine, run.job
        if self.on_wait:
            self.on_wait(_busy(engine, job))
        deadline = time.monotonic() + self.wait_for_lease
        while time.monotonic() < deadline:
            time.sleep(min(LEASE_POLL_S, max(deadline - time.monotonic(), 0)))
            if JOB_LEASES.take(engine, job.name, run.owner, job.lease_seconds):
                return True
        return False


def _busy(engine: sa.Engine, job: Job) -> str:
    """Why a run is skipped: which run (`host:pid/run_id`) holds the lease, and when that
    lease expires if its holder stops renewing it (a holder killed on another host)."""
    holder = JOB_LEASES.holder(engine, job.name)
    if holder is None:  # released since
        return "another run of this job is in progress"
    owner, left = holder
    return f"another run of this job is in progress (lease held by {owner}; it expires in {max(left, 0):.0f} s " \
        "unless its holder renews it)"


@dataclass(frozen=True)
class HistoryStep:
    """The run's row in `task_runs`: `running` at the start, its outcome at the end, one
    log line for a run that did something. With `quiet_when_idle`, a run that found
    nothing to do leaves no row (its start is held back, then discarded)."""

    quiet_when_idle: bool

    def __call__(self, run: Run, proceed: Proceed) -> RunResult:
        history = run.ctx.history
        running = RunResult(run.run_id, run.job.name, RUNNING, 0, {}, None)
        history.started(_row(running, run.task_id, run.started, None), defer=self.quiet_when_idle)
        result = proceed()
        if result.status == IDLE:
            if self.quiet_when_idle and history.discard(run.run_id):
                log.debug("job %s found nothing to do (task %s)", run.job.name, run.task_id)
                return result
            result = replace(result, status=SKIPPED if result.error else OK)
        _log_outcome(run.job, result)
        history.finished(
            run.run_id,
            status=result.status,
            finished_at=run.finished_at,
            duration_ms=result.duration_ms,
            error=result.error,
            summary=_summary_json(result.summary),
        )
        return result


def _execute(run: Run) -> RunResult:
    """The job itself. A run that found nothing to do comes back IDLE (ok with its summary,
    or skipped with its reason, once recorded)."""
    job = run.job
    try:
        return run.ended(OK, summary=job.run(run.ctx, run.options))
    except NothingToDo as exc:
        if exc.summary is None:
            return run.ended(IDLE, error_message(exc))
        return run.ended(IDLE, summary=exc.summary)
    except Skipped as exc:
        return run.ended(SKIPPED, error_message(exc))
    except Exception as exc:
        error = error_message(exc, describe_url(run.ctx.engine))
        log.error("job %s failed: %s", job.name, error)
        log.debug("job %s traceback:\n%s", job.name, redact(traceback.format_exc()))
        return run.ended(ERROR, error)


def _log_outcome(job: Job, result: RunResult) -> None:
    """One line for a run that did something or was skipped (errors are logged as they happen)."""
    if result.status == SKIPPED:
        log.info("job %s skipped: %s", job.name, result.error)
    elif result.status == OK:
        said = job.render(result.summary) if job.render else json.dumps(result.summary, default=str)
        if len(said) > LOGGED_SUMMARY_CHARS:
            said = said[: LOGGED_SUMMARY_CHARS - 3] + "..."
        log.info("job %s done in %d ms: %s", job.name, result.duration_ms, redact(said))


def record_failure(ctx: JobContext, job: str, what: str, error: Exception) -> None:
    """Record a run of `job` that failed before it could start, e.g. `what` = "could not
    schedule this run" when the database refused the tick's claim."""
    message = f"{what}: {error_message(error, describe_url(ctx.engine))}"
    _record_finished(ctx, RunResult(new_id(), job, ERROR, 0, {}, message), None, time.time())


def record_skipped(ctx: JobContext, job: str, why: str, task_id: str | None = None) -> RunResult:
    """Record a run of `job` that was not started on purpose (e.g. the job is disabled here)."""
    log.info("job %s skipped: %s", job, why)
    return _record_finished(ctx, RunResult(new_id(), job, SKIPPED, 0, {}, why), task_id, time.time())


def _record_finished(ctx: JobContext, result: RunResult, task_id: str | None, started: float) -> RunResult:
    try:
        ctx.history.started(_row(result, task_id, started, finished=started))
    except Exception as exc:
        log.warning("could not record a %s run of %s: %s", result.status, result.job, error_message(exc))
    return result


def _summary_json(summary: Mapping[str, Any]) -> str:
    return redact(json.dumps(summary, default=str, sort_keys=True))


def _row(result: RunResult, task_id: str | None, started: float, finished: float | None) -> dict[str, Any]:
    return {
        "id": result.run_id,
        "job": result.job,
        "task_id": task_id,
        "status": result.status,
        "started_at": started,
        "finished_at": finished,
        "duration_ms": result.duration_ms if finished else None,
        "error": result.error,
        "summary": _summary_json(result.summary) if finished else None,
        "host": f"{socket.gethostname()}:{os.getpid()}",  # this process now (a forked worker is its own)
    }
