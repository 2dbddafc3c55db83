"""Test helpers: run the CLI as a user would; wait for state another thread or process
writes; snapshot a database's schema and rows; a job context and its recorded runs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from db.schema import task_runs
from workers import config
from workers.registry import Job, JobContext
from workers.runner import run_job


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `proxyos-worker ARGS` in a new process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(
    predicate: Callable[[], Any], timeout: float = 60.0, what: str = "a condition", interval: float = 0.05
) -> Any:
    """Poll `predicate` until it returns something true, and return that; for state that
    another thread or process writes (a row, a file, a log line) with nothing to await.

    An exception from `predicate` counts as "not yet" (what is polled may be down for a
    moment: a fault test waits for it to come back); the last one is named if time runs
    out. The failure says what was awaited and for how long."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            error = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{error}") from last_error
        time.sleep(interval)


def schema(engine: sa.Engine) -> dict[str, dict]:
    """{table: {"columns": {name: type}, "indexes": {name: (columns, unique)}}}."""
    inspector = sa.inspect(engine)
    found = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        found[table] = {
            "columns": {
                col["name"]: (str(col["type"]).upper(), col["nullable"])
                for col in inspector.get_columns(table)
            },
            "indexes": {
                ix["name"]: (tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            },
        }
    return found


def rows(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order, keyed by table name."""
    meta = sa.MetaData()
    meta.reflect(engine)
    dump = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            if table.name == "alembic_version":
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            dump[table.name] = [tuple(r._mapping.items()) for r in conn.execute(sa.select(table).order_by(*order))]
    return dump


def job_context(url: str, tmp_path: Path) -> JobContext:
    """A context for running jobs in this process on the database at `url`."""
    return JobContext(config.load({"PROXYOS_DATABASE_URL": url, "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db"}))


def job_runs(engine: sa.Engine, job: str) -> list[dict]:
    """The `task_runs` rows of `job`, oldest first."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(task_runs).where(task_runs.c.job == job).order_by(task_runs.c.started_at)).mappings()]


@contextmanager
def run_in_progress(ctx: JobContext, job: str) -> Iterator[float]:
    """A run of the exclusive job `job` (its lease held), in a thread, until the block
    ends; yields when it began. The run ends, and the thread is joined, on the way out."""
    started, release = threading.Event(), threading.Event()

    def hold(_ctx, _options):
        started.set()
        if not release.wait(60):
            raise TimeoutError("the held run was never released")
        return {}

    holder = threading.Thread(target=run_job, args=(ctx, Job(job, "", run=hold)))
    holder.start()
    try:
        if not started.wait(30):
            raise TimeoutError("the held run did not start")
        yield time.time()
    finally:
        release.set()
        holder.join()
