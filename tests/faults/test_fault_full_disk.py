"""The disk under the SQLite database fills up while the consumer ingests: writes fail
with a clear recorded error, nothing is corrupted, and work resumes when space returns."""

from __future__ import annotations

import errno
import os
import time

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from tests.toolkit.caddy_log import append_lines
from tests.toolkit.factories import add_route
from tests.toolkit.processes import Consumer, run_cli, wait_until


@pytest.fixture
def small_disk(tmpfs):
    return tmpfs("16m")


def _fill(disk, leave_bytes: int) -> None:
    """A ballast file that leaves at most `leave_bytes` free (the consumer writes at the
    same time, so the disk may fill up before the ballast is complete: that is fine)."""
    stats = os.statvfs(disk)
    remaining = stats.f_bavail * stats.f_frsize - leave_bytes
    chunk = b"\0" * (256 * 1024)
    with (disk / "ballast").open("wb") as ballast:
        try:
            while remaining > 0:
                remaining -= ballast.write(chunk[: min(len(chunk), remaining)])
                ballast.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


def test_ingest_on_a_full_disk_fails_clearly_and_resumes(small_disk, worker_env, tmp_path):
    db_url = f"sqlite:///{small_disk / 'proxyos.db'}"
    log_file = tmp_path / "access.log"
    env = dict(worker_env, PROXYOS_DATABASE_URL=db_url, PROXYOS_ACCESS_LOG=str(log_file),
               PROXYOS_RETENTION_ACCESS_LOG_PER_ROUTE="0")  # every row kept: counted below
    assert run_cli(["migrate"], env).returncode == 0
    engine = create_engine(db_url)
    add_route(engine, "app.test", id="r1", name="app", upstreams="[]", health_check_enabled=0, created_at=1)

    def ingested() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM access_log")).scalar()

    append_lines(log_file, "app.test", 1000, start_ts=time.time() - 600)
    consumer = Consumer(env, tmp_path / "worker.log", "--workers", "2")
    try:
        wait_until(lambda: ingested() == 1000, timeout=60, what="the first lines")
        _fill(small_disk, leave_bytes=64 * 1024)
        append_lines(log_file, "app.test", 20_000, start_ts=time.time() - 300)
        signs = ("job ingest failed", "job ingest did not run", "could not schedule ingest")
        wait_until(lambda: any(sign in consumer.log() for sign in signs), timeout=60, what="ingest to fail")
        assert ingested() < 21_000
        (small_disk / "ballast").unlink()
        wait_until(lambda: ingested() == 21_000, timeout=120, what="ingest to resume")

        def recorded_error():
            with engine.connect() as conn:
                return conn.execute(sa.text(
                    "SELECT error FROM task_runs WHERE job = 'ingest' AND status = 'error'")).scalars().all()

        errors = wait_until(recorded_error, timeout=30, what="the error in task_runs")
        assert any("disk is full" in error for error in errors), errors
        assert consumer.process.poll() is None
    finally:
        code = consumer.stop()
        engine.dispose()
    assert code == 0
    check = run_cli(["db", "check"], env)
    assert check.stdout.strip() == "ok", check.stdout
    with create_engine(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(DISTINCT seq) FROM access_log")).scalar() == 21_000
