"""PostgreSQL stopped in the middle of an ingest run: the run fails with a clear recorded
error, the consumer carries on, and once the server is back every line is ingested once."""

from __future__ import annotations

import time

import sqlalchemy as sa

from db.engine import create_engine
from tests.toolkit.caddy_log import append_lines
from tests.toolkit.databases import scalar
from tests.toolkit.factories import add_route
from tests.toolkit.processes import Consumer, run_cli, wait_until

LINES = 60_000




def test_ingest_survives_a_postgres_restart_mid_run(private_postgres, worker_env, tmp_path):
    log_file = tmp_path / "access.log"
    env = dict(
        worker_env,
        PROXYOS_DATABASE_URL=private_postgres.url,
        PROXYOS_ACCESS_LOG=str(log_file),
        PROXYOS_RETENTION_ACCESS_LOG_PER_ROUTE="0",
        PROXYOS_TRAFFIC_INGEST_BATCH="200",  # many short transactions: a long run to interrupt
    )
    assert run_cli(["migrate"], env).returncode == 0
    engine = create_engine(private_postgres.url)
    add_route(engine, "app.test", id="r1", name="app", upstreams="[]", health_check_enabled=0, created_at=1)
    append_lines(log_file, "app.test", LINES, start_ts=time.time() - 3600)

    consumer = Consumer(env, tmp_path / "worker.log", "--workers", "2")
    try:
        # Stop the server while an ingest run is between its batches.
        wait_until(lambda: 0 < scalar(engine, "SELECT count(*) FROM access_log") < LINES // 2,
                   timeout=120, what="an ingest run to be under way")
        private_postgres.stop()
        wait_until(lambda: "job ingest failed" in consumer.log(), timeout=60, what="the run to fail")
        private_postgres.start()
        engine.dispose()

        wait_until(lambda: scalar(engine, "SELECT count(*) FROM access_log") == LINES,
                   timeout=180, what="every line to be ingested after the restart")
        failed = wait_until(lambda: scalar(engine, "SELECT count(*) FROM task_runs WHERE job='ingest'"
                                                  " AND status='error'"), timeout=30, what="the failure to be recorded")
        assert failed >= 1
        with engine.connect() as conn:
            errors = [row[0] for row in conn.execute(sa.text(
                "SELECT error FROM task_runs WHERE job='ingest' AND status='error'"))]
        assert all(errors) and any(
            word in " ".join(errors).lower() for word in ("connection", "terminat", "server closed")
        ), errors
        assert scalar(engine, "SELECT count(DISTINCT seq) FROM access_log") == LINES  # none twice
        assert consumer.process.poll() is None, "the consumer died with the database"
    finally:
        code = consumer.stop()
        engine.dispose()
    assert code == 0, consumer.log()[-3000:]
