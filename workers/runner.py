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
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from db.engine import describe_url
from db.errors import explain
from db.problem import Problem
from db.sql import new_id
from tasks.outcome import NothingToDo, Skipped
from tasks.redaction import redact

from .leases import acquire_lease, keep_lease, lease_holder, release_dead_leases
from .registry import Job, JobContext

log = logging.getLogger("proxyos.runner")
HOST = f"{socket.gethostname()}:{os.getpid()}"
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


def lease_owner(run_id: str) -> str:
    """`host:pid/run_id`: a consumer starting on this host can tell a dead holder's lease."""
    return f"{HOST}/{run_id}"


def _take_lease(engine: sa.Engine, job: Job, owner: str) -> bool:
    if acquire_lease(engine, job.name, owner, job.lease_seconds):
        return True
    # A holder killed on this host can neither renew nor release: take over at once
    # (holders on other hosts are waited for until their lease expires).
    if release_dead_leases(engine, socket.gethostname(), job.name):
        return acquire_lease(engine, job.name, owner, job.lease_seconds)
    return False


def _busy(engine: sa.Engine, job: Job) -> str:
    """Why a run is skipped: which run (`host:pid/run_id`) holds the lease, and when that
    lease expires if its holder stops renewing it (a holder killed on another host)."""
    holder = lease_holder(engine, job.name)
    if holder is None:  # released since
        return "another run of this job is in progress"
    owner, left = holder
    return f"another run of this job is in progress (lease held by {owner}; it expires in {max(left, 0):.0f} s " \
        "unless its holder renews it)"


def _wait_for_lease(engine: sa.Engine, job: Job, owner: str, seconds: float, on_wait: WaitHook | None) -> bool:
    """Poll for the lease until `seconds` pass: the run holding it is another process's,
    with nothing to await but its row going away."""
    if on_wait:
        on_wait(_busy(engine, job))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(LEASE_POLL_S, max(deadline - time.monotonic(), 0)))
        if _take_lease(engine, job, owner):
            return True
    return False


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
    (`NothingToDo`) is not recorded, if its start was not written yet (`IDLE`)."""
    options = dict(options or {})
    engine = ctx.engine
    run_id = new_id()
    started = time.time()
    try:
        leased = not job.exclusive or _take_lease(engine, job, lease_owner(run_id))
        if not leased and wait_for_lease > 0:
            leased = _wait_for_lease(engine, job, lease_owner(run_id), wait_for_lease, on_wait)
            started = time.time()
        why_skipped = None if leased else _busy(engine, job) + (f"; {when_busy}" if when_busy else "")
    except Exception as exc:  # the database is unreachable: record it (later, if buffered)
        error = f"could not take the job's lease: {error_message(exc, describe_url(engine))}"
        log.error("job %s did not run: %s", job.name, error)
        return _record_finished(ctx, RunResult(run_id, job.name, ERROR, 0, {}, error), task_id, started)
    if not leased:
        skipped = RunResult(run_id, job.name, SKIPPED, 0, {}, why_skipped, busy=True)
        return _record_finished(ctx, skipped, task_id, started)

    with ExitStack() as held:
        if job.exclusive:
            held.enter_context(keep_lease(engine, job.name, lease_owner(run_id), job.lease_seconds))
        running = RunResult(run_id, job.name, RUNNING, 0, {}, None)
        ctx.history.started(_row(running, task_id, started, None), defer=quiet_when_idle)
        status, summary, error, idle = OK, {}, None, False
        try:
            summary = dict(job.run(ctx, options) or {})
        except NothingToDo as exc:
            idle = True
            if exc.summary is None:
                status, error = SKIPPED, error_message(exc)
            else:
                summary = dict(exc.summary)
        except Skipped as exc:
            status, error = SKIPPED, error_message(exc)
        except Exception as exc:
            status, error = ERROR, error_message(exc, describe_url(engine))
            log.error("job %s failed: %s", job.name, error)
            log.debug("job %s traceback:\n%s", job.name, redact(traceback.format_exc()))
        finished = time.time()
        result = RunResult(run_id, job.name, status, int((finished - started) * 1000), summary, error)
        if idle and quiet_when_idle and ctx.history.discard(run_id):
            log.debug("job %s found nothing to do (task %s)", job.name, task_id)
            return RunResult(run_id, job.name, IDLE, result.duration_ms, summary, error)
        _log_outcome(job, result)
        ctx.history.finished(
            run_id,
            status=status,
            finished_at=finished,
            duration_ms=result.duration_ms,
            error=error,
            summary=_summary_json(summary),
        )
    return result


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
        "host": HOST,
    }
