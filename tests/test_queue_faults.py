"""The consumer rides out a Redis restart: a private redis-server on a free port."""

from __future__ import annotations

import shutil
import signal

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from tests.toolkit.processes import Consumer, free_port, run_cli, wait_until
from tests.toolkit.servers.redis import start_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def _ok_runs(url: str, task_id: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM task_runs WHERE task_id = :t AND status = 'ok'"),
                                {"t": task_id}).scalar() == 1
    finally:
        engine.dispose()


def _wait(predicate, timeout=60.0) -> bool:
    """Whether `predicate` came true in time."""
    try:
        return bool(wait_until(predicate, timeout, interval=0.1))
    except AssertionError:
        return False


def test_consumers_reconnect_after_redis_restarts(worker_env, sqlite_url, tmp_path):
    port = free_port()
    server = start_redis(port, tmp_path)
    env = dict(worker_env, PROXYOS_QUEUE_URL=f"redis://127.0.0.1:{port}/0")
    assert run_cli(["migrate"], env).returncode == 0
    worker = Consumer(env, tmp_path / "worker.log", "--no-periodic", "--workers", "2")
    try:
        first = run_cli(["enqueue", "backup"], env).stdout.strip()
        assert _wait(lambda: _ok_runs(sqlite_url, first)), "the first task was not processed"

        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        failed = run_cli(["enqueue", "backup"], env)
        assert failed.returncode == 1  # the queue is down: enqueue says so, in one line
        assert failed.stderr.strip().count("\n") == 0 and "cannot reach the queue" in failed.stderr
        server = start_redis(port, tmp_path)

        second = run_cli(["enqueue", "backup"], env)
        assert second.returncode == 0, second.stderr
        recovered = _wait(lambda: _ok_runs(sqlite_url, second.stdout.strip()))
        alive = worker.process.poll() is None
    finally:
        code = worker.stop()
        server.kill()
        err = worker.log()
    assert alive, f"the consumer died with Redis: {err[-3000:]}"
    assert recovered, f"no task ran after Redis came back: {err[-8000:]}"
    assert code == 0, err
