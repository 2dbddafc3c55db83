"""A run someone asks for (`run-once`, `enqueue`) while a run of the same job is in
progress is not dropped: `run-once` waits for it, a queued request is retried until it
runs. Periodic ticks are still skipped (the next tick comes anyway)."""

from __future__ import annotations

import datetime
import subprocess
import sys
import threading
import time

from db.leases import JOB_LEASES
from tests.toolkit.jobs import job_context, job_runs, run_in_progress
from tests.toolkit.processes import run_cli, wait_until
from workers import config
from workers.queue import JobQueue, build_huey, retry_delay
from workers.registry import Job, JobContext
from workers.runner import run_job

OTHER_HOST = "otherhost:4242/run-1"  # a live holder on another host: not probed, only waited for


def test_a_run_told_to_wait_runs_once_the_run_in_progress_ends(any_engine, any_url, tmp_path):
    ctx = job_context(any_url, tmp_path)
    told, ran_at, waiting = [], [], {}
    job = Job("slow", "", run=lambda c, o: ran_at.append(time.time()) or {})
    with run_in_progress(ctx, "slow"):
        second = threading.Thread(target=lambda: waiting.update(
            result=run_job(ctx, job, wait_for_lease=30, on_wait=told.append)))
        second.start()
        wait_until(lambda: told, timeout=30, what="the second run to say whom it waits for")
        assert ran_at == []  # it did not run alongside
        first_ended = time.time()
    second.join(timeout=60)
    assert waiting["result"].status == "ok"
    assert ran_at[0] >= first_ended
    assert "in progress" in told[0] and "lease held by" in told[0]
    assert [r["status"] for r in job_runs(ctx.engine, "slow")] == ["ok", "ok"]
    ctx.close()


def test_a_run_that_waits_too_long_is_skipped_and_says_why(any_engine, any_url, tmp_path):
    ctx = job_context(any_url, tmp_path)
    assert JOB_LEASES.take(ctx.engine, "held", OTHER_HOST, 60)
    ran = []
    began = time.monotonic()
    result = run_job(ctx, Job("held", "", run=lambda c, o: ran.append(1)), wait_for_lease=1.0)
    assert time.monotonic() - began >= 1.0
    assert ran == [] and result.status == "skipped" and result.busy
    assert OTHER_HOST in result.error
    ctx.close()


def _next_task(huey):
    """The one queued task: a retry waits in the queue with an eta, which the consumer
    honours; here it runs at once."""
    assert huey.pending_count() == 1 and huey.scheduled_count() == 0
    return huey.dequeue()


def test_a_queued_request_finding_its_job_busy_is_retried_until_it_runs(sqlite_url, engine, tmp_path):
    settings = config.load({"PROXYOS_DATABASE_URL": sqlite_url, "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db"})
    ctx = JobContext(settings)
    ran = []
    job = Job("aggregate-like", "", run=lambda c, o: ran.append(dict(o)) or {})
    huey = build_huey(settings.queue)
    queue = JobQueue(huey, {job.name: job}, context=lambda: ctx)
    assert JOB_LEASES.take(engine, job.name, OTHER_HOST, 600)

    queue.enqueue(job.name)  # a periodic tick: skipped, and that is all
    huey.execute(_next_task(huey))
    assert huey.pending_count() == 0 and huey.scheduled_count() == 0

    queue.enqueue(job.name, on_demand=True, route="r1")
    task = _next_task(huey)
    requested_at = task.args[0]["requested_at"]
    for attempt in range(3):  # busy each time: retried later, each time a little later
        executed_at = time.time()
        huey.execute(task, timestamp=task.eta)  # at its eta, as the consumer would
        task = _next_task(huey)
        assert ran == [] and task.args[0]["attempt"] == attempt + 1
        wait = task.eta.replace(tzinfo=datetime.UTC).timestamp() - executed_at
        assert retry_delay(attempt) - 1 < wait <= retry_delay(attempt) + 1
    skipped = [r for r in job_runs(engine, job.name) if r["status"] == "skipped"]
    assert len(skipped) == 4  # the tick and three tries of the request
    assert [f"retried in {retry_delay(n):g} s" in r["error"] for n, r in enumerate(skipped[1:])] == [True] * 3
    assert "retried" not in skipped[0]["error"]
    assert all(OTHER_HOST in r["error"] for r in skipped)

    JOB_LEASES.release(engine, job.name, OTHER_HOST)
    huey.execute(task, timestamp=task.eta)
    assert len(ran) == 1 and ran[0]["route"] == "r1" and ran[0]["requested_at"] == requested_at
    assert huey.pending_count() == 0 and huey.scheduled_count() == 0
    assert job_runs(engine, job.name)[-1]["status"] == "ok"
    ctx.close()


def test_retry_delays_grow_to_half_a_minute():
    assert [retry_delay(n) for n in range(6)] == [2, 4, 8, 16, 30, 30]


def test_run_once_waits_for_a_lease_held_elsewhere_and_says_so(engine, worker_env, tmp_path):
    assert JOB_LEASES.take(engine, "aggregate", OTHER_HOST, 600)
    err = tmp_path / "stderr"
    with err.open("w") as stderr:  # started while the lease is held, however slow its start-up
        proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "run-once", "aggregate", "--wait", "60"],
                                env=worker_env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        wait_until(lambda: "waiting up to 60 s" in err.read_text(), timeout=60, what="run-once to say it waits")
        assert proc.poll() is None  # still waiting while the lease is held
        JOB_LEASES.release(engine, "aggregate", OTHER_HOST)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.read_text()
    assert f"lease held by {OTHER_HOST}" in err.read_text()
    assert stdout.startswith("aggregate: ok")

    assert JOB_LEASES.take(engine, "aggregate", OTHER_HOST, 600)
    skipped = run_cli(["run-once", "aggregate", "--wait", "0"], worker_env)
    assert skipped.returncode == 0 and skipped.stdout.startswith("aggregate: skipped"), skipped.stdout
    assert f"lease held by {OTHER_HOST}" in skipped.stdout
