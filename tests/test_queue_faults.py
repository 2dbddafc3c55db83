"""The consumer rides out a Redis restart: a private redis-server on a free port."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis
import sqlalchemy as sa

from db.engine import create_engine

from support import run_cli

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(port: int, workdir) -> subprocess.Popen:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("redis-server did not start")


def _ok_runs(url: str, task_id: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM task_runs WHERE task_id = :t AND status = 'ok'"),
                                {"t": task_id}).scalar() == 1
    finally:
        engine.dispose()


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_consumers_reconnect_after_redis_restarts(worker_env, sqlite_url, tmp_path):
    port = _free_port()
    server = _start_redis(port, tmp_path)
    env = dict(worker_env, PROXYOS_QUEUE_URL=f"redis://127.0.0.1:{port}/0")
    assert run_cli(["migrate"], env).returncode == 0
    log = (tmp_path / "worker.log").open("w+")  # a file, not a pipe: a full pipe would block the worker
    worker = subprocess.Popen([sys.executable, "-m", "workers.cli", "run", "--no-periodic", "--workers", "2"],
                              env=env, stdout=log, stderr=log, text=True)
    try:
        first = run_cli(["enqueue", "backup"], env).stdout.strip()
        assert _wait(lambda: _ok_runs(sqlite_url, first)), "the first task was not processed"

        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        failed = run_cli(["enqueue", "backup"], env)
        assert failed.returncode == 1  # the queue is down: enqueue says so, in one line
        assert failed.stderr.strip().count("\n") == 0 and "cannot reach the queue" in failed.stderr
        server = _start_redis(port, tmp_path)

        second = run_cli(["enqueue", "backup"], env)
        assert second.returncode == 0, second.stderr
        recovered = _wait(lambda: _ok_runs(sqlite_url, second.stdout.strip()))
        alive = worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        server.kill()
        log.seek(0)
        err = log.read()
    assert alive, f"the consumer died with Redis: {err[-3000:]}"
    assert recovered, f"no task ran after Redis came back: {err[-8000:]}"
    assert worker.returncode == 0, err
