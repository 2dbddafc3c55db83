"""The consumer end to end: real queue (SQLite file or Redis), scheduler, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from tests.toolkit.processes import Consumer, run_cli, wait_until
from tests.toolkit.snapshots import file_mode
from workers import config
from workers.consumer import GracefulConsumer
from workers.queue import JobQueue, build_huey
from workers.registry import Job, JobContext

REDIS_URL = os.environ.get("PROXYOS_TEST_REDIS_URL")


def _runs(url: str, job: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("task_runs"):
                return []
            return conn.execute(
                sa.text("SELECT status, task_id FROM task_runs WHERE job = :j AND status != 'running'"),
                {"j": job},
            ).all()
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def queue_env(request, worker_env, tmp_path):
    if request.param == "sqlite":
        return worker_env
    if not REDIS_URL:
        pytest.skip("PROXYOS_TEST_REDIS_URL is not set")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return dict(worker_env, PROXYOS_QUEUE_URL=REDIS_URL)


def test_run_consumes_scheduled_and_enqueued_jobs_and_stops_on_sigterm(queue_env, sqlite_url, tmp_path):
    worker = Consumer(queue_env, tmp_path / "worker.log", "--workers", "2")
    try:
        # The daily backup's current tick has not run yet, so the scheduler enqueues it now.
        wait_until(lambda: _runs(sqlite_url, "backup"), what="the scheduled backup")
        enqueued = run_cli(["enqueue", "backup"], queue_env)
        assert enqueued.returncode == 0, enqueued.stderr
        task_id = enqueued.stdout.strip()
        runs = wait_until(lambda: [r for r in _runs(sqlite_url, "backup") if r[1] == task_id] and
                          _runs(sqlite_url, "backup"), what="the enqueued backup")
        assert [status for status, _ in runs] == ["ok", "ok"]
        assert len(list((tmp_path / "backups").glob("proxyos-*.db"))) >= 1
    finally:
        code = worker.stop()
    assert code == 0, worker.log()
    if queue_env["PROXYOS_QUEUE_URL"].startswith("sqlite:///"):
        queue_file = Path(queue_env["PROXYOS_QUEUE_URL"].removeprefix("sqlite:///"))
        assert file_mode(queue_file) == 0o600


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_lets_the_running_task_finish_and_starts_no_new_one(engine, sqlite_url, tmp_path, signum):
    settings = config.load({"PROXYOS_DATABASE_URL": sqlite_url, "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db"})
    ctx = JobContext(settings)
    started, release = threading.Event(), threading.Event()

    def slow(_ctx, _options):
        started.set()
        if not release.wait(60):
            raise TimeoutError("never released")
        return {"finished": True}

    queue = JobQueue(build_huey(settings.queue), {"slow": Job("slow", "", run=slow, exclusive=False)},
                     context=lambda: ctx)
    queue.enqueue("slow")
    queue.enqueue("slow")  # must still be queued after the stop: one worker, busy with the first
    # The running task is released only once the consumer has begun to stop.
    consumer = GracefulConsumer(queue.huey, workers=1, periodic=False, worker_type="thread",
                                shutdown_timeout=30, on_stop=release.set)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}

    def stop_when_started():
        assert started.wait(60)
        os.kill(os.getpid(), signum)

    sender = threading.Thread(target=stop_when_started)
    sender.start()
    try:
        consumer.run()
    finally:
        sender.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
    with ctx.engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT status, summary FROM task_runs WHERE job='slow'")).all()
    assert runs == [("ok", '{"finished": true}')]
    assert queue.huey.pending_count() == 1
    ctx.close()


def test_a_killed_consumers_running_runs_are_closed_at_the_next_start(worker_env, sqlite_url, tmp_path):
    """SIGKILL a consumer in the middle of a run; the next start marks that run an error."""
    assert run_cli(["migrate"], worker_env).returncode == 0
    engine = create_engine(sqlite_url)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO task_runs (id, job, status, started_at, host) VALUES ('r1', 'backup', 'running', 1, :h)"),
            {"h": f"{socket.gethostname()}:{dead.pid}"})
        conn.execute(sa.text(
            "INSERT INTO task_runs (id, job, status, started_at, host) VALUES ('r2', 'backup', 'running', 1, :h)"),
            {"h": f"{socket.gethostname()}:{os.getpid()}"})  # alive: this test process
    worker = Consumer(worker_env, tmp_path / "worker.log", "--no-periodic")

    def closed():
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT status, error FROM task_runs WHERE id='r1'")).one()[0] == "error"

    try:
        wait_until(closed, what="the orphaned run to be closed")
    finally:
        worker.stop()
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT id, status FROM task_runs")).all())
    assert statuses == {"r1": "error", "r2": "running"}
    engine.dispose()
