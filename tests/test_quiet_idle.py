"""A quiet idle: a periodic run that finds nothing to do writes no `task_runs` row and no
log line, while `status` still shows when the job last looked; a run someone asked for,
a run that did work and every error are still recorded and logged."""

from __future__ import annotations

import json
import logging
import time

import pytest
import sqlalchemy as sa
from huey import MemoryHuey

from db.engine import create_engine
from db.schema import job_schedule
from tasks.outcome import NothingToDo
from tests.toolkit.jobs import job_runs
from tests.toolkit.processes import Consumer, run_cli, wait_until
from workers import config, history, logs
from workers.cli.status import collect
from workers.queue import ON_DEMAND, JobQueue
from workers.registry import Job, JobContext
from workers.runner import run_job
from workers.scheduler import claim_tick


def idle_job(name: str = "idle-job") -> Job:
    def look(_ctx, _options):
        raise NothingToDo("no new lines")
    return Job(name, "", run=look, every=5.0)


def immediate_queue(ctx: JobContext, *jobs: Job) -> JobQueue:
    """Huey in immediate mode: an enqueued task runs at once, in this thread, through the
    same task function a consumer runs."""
    return JobQueue(MemoryHuey("test", immediate=True, results=False), {j.name: j for j in jobs},
                    context=lambda: ctx)


def buffered_context(url: str, tmp_path) -> JobContext:
    settings = config.load({"PROXYOS_DATABASE_URL": url, "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db"})
    return JobContext(settings, buffered_history=True)


def test_a_periodic_run_with_nothing_to_do_leaves_no_row_and_one_asked_for_does(any_engine, any_url, tmp_path):
    ctx = buffered_context(any_url, tmp_path)
    queue = immediate_queue(ctx, idle_job())
    for _ in range(3):
        queue.enqueue("idle-job")  # as the scheduler enqueues a tick
    queue.enqueue("idle-job", **{ON_DEMAND: True})  # as `enqueue` does for a person
    ctx.close()  # flushes the buffered history
    [asked] = job_runs(any_engine, "idle-job")
    assert asked["status"] == "skipped" and asked["error"] == "no new lines"


def test_an_idle_run_whose_start_was_already_written_is_finished_as_skipped(engine, sqlite_url, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(history, "DEFER_S", 0.0)  # its start is written at the next flush
    ctx = buffered_context(sqlite_url, tmp_path)

    def look_long(_ctx, _options):
        wait_until(lambda: job_runs(engine, "slow-idle"), what="the run's start in task_runs")
        raise NothingToDo("nothing due")

    result = run_job(ctx, Job("slow-idle", "", run=look_long, every=5.0), quiet_when_idle=True)
    ctx.close()
    assert result.status == "skipped"
    [run] = job_runs(engine, "slow-idle")
    assert run["status"] == "skipped" and run["error"] == "nothing due"  # never left `running`


def test_a_periodic_run_that_did_work_or_failed_is_recorded(engine, sqlite_url, tmp_path):
    ctx = buffered_context(sqlite_url, tmp_path)

    def fail(_ctx, _options):
        raise ValueError("the access log is unreadable")

    queue = immediate_queue(ctx, Job("worked", "", run=lambda c, o: {"lines": 3}, every=5.0),
                            Job("failed", "", run=fail, every=5.0))
    queue.enqueue("worked")
    queue.enqueue("failed")
    ctx.close()
    assert [r["status"] for r in job_runs(engine, "worked")] == ["ok"]
    assert [r["error"] for r in job_runs(engine, "failed")] == ["ValueError: the access log is unreadable"]


@pytest.fixture
def configured_logging(caplog):
    """`logs.configure` replaces the root's handlers: put pytest's capture back after it."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def configure(level: int) -> None:
        logs.configure(level)
        root.addHandler(caplog.handler)
        caplog.set_level(level)

    yield configure
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.getLogger("huey").filters.clear()


def test_huey_per_task_lines_show_only_at_debug_and_work_is_one_info_line(configured_logging, caplog, sqlite_url,
                                                                          engine, tmp_path):
    huey_log = logging.getLogger("huey")
    configured_logging(logging.INFO)
    huey_log.info("Executing %s", "proxyos.ingest: 1234")
    huey_log.info("%s executed in %0.3fs", "proxyos.ingest: 1234", 0.004)
    huey_log.warning("Huey's own warnings stay")
    ctx = buffered_context(sqlite_url, tmp_path)
    queue = immediate_queue(ctx, idle_job(), Job("worked", "", run=lambda c, o: {"lines": 3}, every=5.0))
    queue.enqueue("idle-job")
    queue.enqueue("worked")
    ctx.close()
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if m.startswith("Executing") or " executed in " in m]
    assert "Huey's own warnings stay" in said
    assert not [m for m in said if "idle-job" in m]
    assert [m for m in said if m.startswith("job worked done in") and "lines" in m]
    caplog.clear()
    configured_logging(logging.DEBUG)
    huey_log.info("Executing %s", "proxyos.ingest: 1234")
    assert [r.getMessage() for r in caplog.records] == ["Executing proxyos.ingest: 1234"]


def test_status_shows_when_a_job_last_looked_and_found_nothing(engine, sqlite_url, tmp_path):
    settings = config.load({"PROXYOS_DATABASE_URL": sqlite_url, "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db",
                            "PROXYOS_ACCESS_LOG": str(tmp_path / "access.log")})
    tick = int(time.time() // 5 * 5)
    assert claim_tick(engine, "ingest", tick)  # the scheduler enqueued it; no run was recorded

    def ingest_row(report: dict) -> dict:
        return next(j for j in report["jobs"] if j["job"] == "ingest")

    assert ingest_row(collect(settings))["last_idle_at"] == tick
    ctx = JobContext(settings)
    run_job(ctx, Job("ingest", "", run=lambda c, o: {"lines": 1}))  # a run after the tick did work
    ctx.close()
    row = ingest_row(collect(settings))
    assert row["last_idle_at"] is None and row["last_status"] == "ok"


def test_an_idle_worker_writes_no_runs_and_no_per_task_lines(worker_env, sqlite_url, tmp_path):
    """`proxyos-worker run` on an empty database with an empty access log: the ingest and
    health-dispatch ticks come and go (every 5 s) and leave nothing behind."""
    (tmp_path / "access.log").touch()
    env = dict(worker_env, PROXYOS_ACCESS_LOG=str(tmp_path / "access.log"), PROXYOS_JOBS="ingest,health")
    worker = Consumer(env, tmp_path / "worker.log", "--workers", "2")
    engine = create_engine(sqlite_url)
    try:
        def ticks() -> dict[str, int]:
            try:
                with engine.connect() as conn:
                    return {job: tick for job, tick in conn.execute(sa.select(job_schedule.c.job,
                                                                              job_schedule.c.last_tick))}
            except sa.exc.OperationalError:  # not migrated yet
                return {}

        first = wait_until(lambda: (t := ticks()).get("ingest") and t.get("health-dispatch") and t,
                           what="the first ticks of ingest and health-dispatch")
        wait_until(lambda: ticks().get("ingest", 0) >= first["ingest"] + 10
                   and ticks().get("health-dispatch", 0) >= first["health-dispatch"] + 10,
                   timeout=60, what="two more ticks of ingest and health-dispatch")
        status = run_cli(["status", "--json"], env)
    finally:
        code = worker.stop()
        engine.dispose()
    output = worker.log()
    assert code == 0, output
    # ingest's first run records where the (empty) log starts: a change, so a row
    [first_ingest] = job_runs(create_engine(sqlite_url), "ingest")
    assert json.loads(first_ingest["summary"])["batches"] == 1 and first_ingest["started_at"] < first["ingest"] + 5
    assert job_runs(create_engine(sqlite_url), "health-dispatch") == []
    assert "Executing" not in output and " executed in " not in output
    assert status.returncode == 0, status.stderr
    idle = {j["job"]: j["last_idle_at"] for j in json.loads(status.stdout)["jobs"]}
    assert idle["ingest"] and idle["health-dispatch"]
