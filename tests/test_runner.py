"""Run history, leases and the periodic scheduler, on real databases."""

from __future__ import annotations

import json
import threading

import sqlalchemy as sa

from db.leases import JOB_LEASES
from db.schema import job_leases, task_runs
from tasks.outcome import Skipped
from tasks.redaction import remember
from tests.toolkit.jobs import job_context, job_runs, run_in_progress
from tests.toolkit.processes import wait_until
from workers import config
from workers.registry import Job, JobContext, discover
from workers.runner import run_job
from workers.scheduler import PeriodicScheduler, claim_tick, current_tick


def test_every_outcome_is_recorded(any_engine, any_url, tmp_path):
    ctx = job_context(any_url, tmp_path)
    ok = Job("ok-job", "", run=lambda c, o: {"count": 3, "route": o.get("route")})
    bad = Job("bad-job", "", run=lambda c, o: (_ for _ in ()).throw(ValueError("no route r9")))
    skip = Job("skip-job", "", run=lambda c, o: (_ for _ in ()).throw(Skipped("nothing to do")))

    assert run_job(ctx, ok, {"route": "r1"}, task_id="t-1").status == "ok"
    assert run_job(ctx, bad).status == "error"
    assert run_job(ctx, skip).status == "skipped"

    [ok_run] = job_runs(ctx.engine, "ok-job")
    assert ok_run["status"] == "ok" and ok_run["task_id"] == "t-1"
    assert json.loads(ok_run["summary"]) == {"count": 3, "route": "r1"}
    assert ok_run["finished_at"] >= ok_run["started_at"] and ok_run["duration_ms"] >= 0
    [bad_run] = job_runs(ctx.engine, "bad-job")
    assert bad_run["status"] == "error" and bad_run["error"] == "ValueError: no route r9"
    [skip_run] = job_runs(ctx.engine, "skip-job")
    assert skip_run["status"] == "skipped" and skip_run["error"] == "nothing to do"
    ctx.close()


def test_secrets_never_reach_task_runs(engine, sqlite_url, tmp_path):
    ctx = job_context(sqlite_url, tmp_path)
    remember("hunter2-very-secret")

    def leak(_ctx, _options):
        raise RuntimeError("auth failed with token hunter2-very-secret")

    run_job(ctx, Job("leaky", "", run=lambda c, o: {"token": "hunter2-very-secret"}))
    run_job(ctx, Job("leaky", "", run=leak))
    with engine.connect() as conn:
        dump = json.dumps([list(r) for r in conn.execute(sa.select(task_runs))])
    assert "hunter2-very-secret" not in dump and "[redacted]" in dump
    ctx.close()


def test_an_exclusive_job_runs_once_at_a_time(any_engine, any_url, tmp_path):
    ctx = job_context(any_url, tmp_path)
    with run_in_progress(ctx, "slow"):
        second = run_job(ctx, Job("slow", "", run=lambda c, o: {}))
    assert second.status == "skipped" and "in progress" in second.error
    statuses = sorted(r["status"] for r in job_runs(ctx.engine, "slow"))
    assert statuses == ["ok", "skipped"]
    with ctx.engine.connect() as conn:  # the lease is released afterwards
        assert conn.execute(sa.select(sa.func.count()).select_from(job_leases)).scalar() == 0
    ctx.close()


def test_an_expired_lease_is_taken_over(any_engine):
    assert JOB_LEASES.take(any_engine, "j", "crashed-worker", seconds=-1)  # already expired
    assert JOB_LEASES.take(any_engine, "j", "next-worker", seconds=60)
    assert not JOB_LEASES.take(any_engine, "j", "third", seconds=60)
    JOB_LEASES.release(any_engine, "j", "crashed-worker")  # a late release by the old owner
    assert not JOB_LEASES.take(any_engine, "j", "third", seconds=60)
    JOB_LEASES.release(any_engine, "j", "next-worker")
    assert JOB_LEASES.take(any_engine, "j", "third", seconds=60)


def test_each_tick_is_claimed_once_across_schedulers(any_engine):
    claims = [claim_tick(any_engine, "ingest", 100) for _ in range(3)]
    assert claims == [True, False, False]
    assert claim_tick(any_engine, "ingest", 105)
    assert not claim_tick(any_engine, "ingest", 100)  # a late scheduler cannot go back


def test_schedulers_racing_enqueue_each_tick_once(any_engine):
    now = [1_000_020.0]
    enqueued: list[str] = []
    lock = threading.Lock()

    def enqueue(name):
        with lock:
            enqueued.append(name)

    jobs = [Job("every5", "", run=lambda c, o: None, every=5), Job("every60", "", run=lambda c, o: None, every=60)]
    schedulers = [PeriodicScheduler(any_engine, jobs, enqueue, clock=lambda: now[0]) for _ in range(3)]
    for step in range(30):  # 30 seconds of ticks, every scheduler polling every second
        now[0] = 1_000_020.0 + step
        threads = [threading.Thread(target=s.tick) for s in schedulers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert enqueued.count("every5") == 6  # ticks at +0, +5, ..., +25
    assert enqueued.count("every60") == 1
    assert current_tick(5, 1_000_023.9) == 1_000_020


def test_registered_jobs_have_help_and_examples():
    jobs = discover()
    assert "backup" in jobs
    for job in jobs.values():
        assert job.help
        if not job.hidden:
            assert "proxyos-worker " in job.example, job.name


def test_buffered_history_shows_long_runs_as_running_and_writes_everything_on_close(engine, sqlite_url, tmp_path):
    settings = config.load({"PROXYOS_DATABASE_URL": sqlite_url})
    ctx = JobContext(settings, buffered_history=True)
    ctx.history.interval = 0.02
    started, release = threading.Event(), threading.Event()

    def long_run(_ctx, _options):
        started.set()
        assert release.wait(30)
        return {"done": 1}

    worker = threading.Thread(target=run_job, args=(ctx, Job("long", "", run=long_run, exclusive=False)))
    worker.start()
    assert started.wait(30)
    wait_until(lambda: job_runs(engine, "long"), timeout=10, what="the long run's first history flush", interval=0.02)
    assert [r["status"] for r in job_runs(engine, "long")] == ["running"]
    for _ in range(50):
        run_job(ctx, Job("short", "", run=lambda c, o: {"n": 1}, exclusive=False))
    release.set()
    worker.join()
    ctx.close()  # flushes what is left
    assert [r["status"] for r in job_runs(engine, "long")] == ["ok"]
    shorts = job_runs(engine, "short")
    assert len(shorts) == 50 and {r["status"] for r in shorts} == {"ok"}


def test_an_unreachable_database_is_recorded_once_it_is_back(engine, sqlite_url, tmp_path):
    """The lease cannot be taken while another process holds the write lock past the
    busy timeout: the run is an error, recorded by the buffered history afterwards."""
    import sqlite3

    settings = config.load({"PROXYOS_DATABASE_URL": sqlite_url, "PROXYOS_BUSY_TIMEOUT_MS": "50"})
    ctx = JobContext(settings, buffered_history=True)
    ran = []
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        result = run_job(ctx, Job("needs-lease", "", run=lambda c, o: ran.append(1)))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.status == "error" and "database is locked" in result.error and not ran
    ctx.close()
    [row] = job_runs(engine, "needs-lease")
    assert row["status"] == "error" and "could not take the job's lease" in row["error"]


def test_a_long_run_keeps_its_short_lease_alive(engine, sqlite_url, tmp_path):
    """The lease is renewed while the run lasts: a run three times longer than the lease
    is never overtaken by a second one."""
    ctx = job_context(sqlite_url, tmp_path)
    started, release = threading.Event(), threading.Event()

    def slow(_ctx, _options):
        started.set()
        assert release.wait(30)

    job = Job("long-lease", "", run=slow, lease_seconds=0.6)
    first = threading.Thread(target=run_job, args=(ctx, job))
    first.start()
    assert started.wait(30)
    pause = threading.Event()
    outcomes = []
    for _ in range(6):  # 1.8 s: three lease lifetimes
        pause.wait(0.3)
        outcomes.append(run_job(ctx, job).status)
    release.set()
    first.join()
    assert outcomes == ["skipped"] * 6
    assert run_job(ctx, Job("long-lease", "", run=lambda c, o: None, lease_seconds=0.6)).status == "ok"
    ctx.close()


def test_a_tick_that_cannot_be_claimed_is_reported_once_and_retried(sqlite_url, engine):
    import sqlite3

    from db.engine import create_engine

    impatient = create_engine(sqlite_url, busy_timeout_ms=20)
    reports, enqueued = [], []
    job = Job("every5", "", run=lambda c, o: None, every=5)
    scheduler = PeriodicScheduler(impatient, [job], enqueued.append, clock=lambda: 1_000_020.0,
                                  report=lambda name, exc: reports.append((name, str(exc))))
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        scheduler.tick()
        scheduler.tick()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert len(reports) == 1 and reports[0][0] == "every5" and "locked" in reports[0][1]
    assert enqueued == []
    scheduler.tick()  # the same tick, claimed now that the database answers
    assert enqueued == ["every5"]
    impatient.dispose()


def test_an_error_written_for_the_operator_is_shown_as_is_wherever_it_is_defined(sqlite_url, engine, tmp_path):
    """`Problem` decides, not the module the error class lives in."""
    from db.problem import Problem

    class DiskFull(Problem):
        pass

    class Surprise(Exception):
        pass

    ctx = job_context(sqlite_url, tmp_path)
    run_job(ctx, Job("told", "", run=lambda c, o: (_ for _ in ()).throw(DiskFull("the disk is full: free 1 GB"))))
    run_job(ctx, Job("untold", "", run=lambda c, o: (_ for _ in ()).throw(Surprise("what happened"))))
    assert [r["error"] for r in job_runs(engine, "told")] == ["the disk is full: free 1 GB"]
    assert [r["error"] for r in job_runs(engine, "untold")] == ["Surprise: what happened"]
    ctx.close()
