"""PROXYOS_JOBS: which jobs these workers run. Parsed like every setting, and a disabled
job is not scheduled, refused by run-once and enqueue, skipped by a consumer, and shown
as disabled by status."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from db.schema import job_schedule
from tests.toolkit.jobs import job_runs
from tests.toolkit.processes import Consumer, run_cli, wait_until
from workers import config
from workers.job_selection import enabled_jobs, parse
from workers.registry import discover
from workers.scheduler import PeriodicScheduler

HEALTH = {"health", "health-dispatch", "health-batch"}
TRAFFIC = {"ingest", "aggregate", "prune"}
CERTS = {"certs", "issue", "caddy-sync"}
ALERTS = {"alerts-evaluate", "notify"}
EVERY_JOB = HEALTH | TRAFFIC | CERTS | ALERTS | {"backup"}


def _disabled(value: str) -> set[str]:
    return set(config.load({"PROXYOS_JOBS": value}).jobs.disabled)


@pytest.mark.parametrize(
    ("value", "disabled"),
    [
        ("", set()),
        ("all", set()),
        ("all,-health", HEALTH),
        ("-health", HEALTH),  # a list that begins by leaving out starts from all
        ("traffic,backup", HEALTH | CERTS | ALERTS),
        ("all,-alerts", ALERTS),
        ("all,-ingest", {"ingest"}),
        (" traffic , -prune , health-dispatch , health-batch ",
         (EVERY_JOB - TRAFFIC - {"health-dispatch", "health-batch"}) | {"prune"}),
        ("all,-health-dispatch", {"health-dispatch"}),  # health-batch alone: on-demand batches only
        ("backup,prune", EVERY_JOB - {"backup", "prune"}),
        ("all,-all", EVERY_JOB),
    ],
)
def test_areas_and_names_are_added_and_left_out_left_to_right(value, disabled):
    assert _disabled(value) == disabled


def test_the_areas_are_the_job_modules():
    areas = {job.name: job.area for job in discover().values()}
    assert set(areas) == EVERY_JOB
    assert {name for name, area in areas.items() if area == "health"} == HEALTH
    assert {name for name, area in areas.items() if area == "traffic"} == TRAFFIC
    assert {name for name, area in areas.items() if area == "certs"} == CERTS
    assert parse("all,-x", {"x": "a", "y": "a"}).disabled == {"x"}


@pytest.mark.parametrize("value", ["all,-helth", "heatlh", "all,,-health", "-", "traffic;backup"])
def test_an_unknown_name_stops_with_one_line_and_exit_2(value, worker_env):
    result = run_cli(["status"], dict(worker_env, PROXYOS_JOBS=value))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("proxyos-worker: PROXYOS_JOBS=")
    assert "expected all, or a comma list of areas (alerts, backup, certs, health, traffic)" in lines[0]
    assert "health-dispatch" in lines[0]


@pytest.mark.parametrize("value", ["all,-health-batch", "health-dispatch", "traffic,health-dispatch"])
def test_a_dispatcher_without_the_job_it_feeds_stops_with_one_line(value, worker_env):
    """health-dispatch claims due checks that only health-batch performs: one without the
    other would mark checks done that never run."""
    result = run_cli(["status"], dict(worker_env, PROXYOS_JOBS=value))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "health-dispatch together with health-batch" in lines[0] and "enable both or neither" in lines[0]


def test_a_scheduler_tick_enqueues_only_enabled_jobs(engine):
    selection = config.load({"PROXYOS_JOBS": "all,-health,-certs,-alerts"}).jobs
    enqueued: list[str] = []
    scheduler = PeriodicScheduler(engine, enabled_jobs(discover().values(), selection), enqueued.append,
                                  clock=lambda: 1_764_000_000.0)
    assert scheduler.tick() == ["backup", "ingest", "aggregate", "prune"]
    assert enqueued == ["backup", "ingest", "aggregate", "prune"]
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(job_schedule.c.job)).scalars()) == {"backup", "ingest", "aggregate", "prune"}


def _scheduled(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(job_schedule.c.job)).scalars())
    finally:
        engine.dispose()


def test_the_consumer_schedules_no_disabled_job(worker_env, sqlite_url, tmp_path):
    env = dict(worker_env, PROXYOS_JOBS="backup,prune")
    assert run_cli(["migrate"], env).returncode == 0
    worker = Consumer(env, tmp_path / "worker.log", "--workers", "1")
    try:
        # prune is the last periodic job the scheduler goes through: its tick is claimed
        # once the scheduler's first pass is over.
        wait_until(lambda: "prune" in _scheduled(sqlite_url), what="the first scheduler pass")
        assert _scheduled(sqlite_url) == {"backup", "prune"}
    finally:
        code = worker.stop()
    output = worker.log()
    assert code == 0, output
    assert "periodic jobs: backup every 86400s, prune every 3600s" in output
    assert "disabled by PROXYOS_JOBS=backup,prune: aggregate, alerts-evaluate, caddy-sync, certs, health" in output


def test_run_once_and_enqueue_refuse_a_disabled_job(worker_env, sqlite_url):
    env = dict(worker_env, PROXYOS_JOBS="all,-backup")
    assert run_cli(["migrate"], env).returncode == 0
    for command in (["run-once", "backup"], ["enqueue", "backup"]):
        result = run_cli(command, env)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
        assert f"{command[0]} backup: not run: backup is disabled here by PROXYOS_JOBS=all,-backup" in result.stderr
    engine = create_engine(sqlite_url)
    try:
        assert job_runs(engine, "backup") == []
    finally:
        engine.dispose()
    status = json.loads(run_cli(["status", "--json"], env).stdout)
    assert status["queue"]["pending"] == 0
    # Enabled jobs are not affected.
    assert run_cli(["run-once", "prune"], env).returncode == 0


def test_a_consumer_skips_a_message_for_a_job_it_has_disabled(worker_env, sqlite_url, tmp_path):
    consumer_env = dict(worker_env, PROXYOS_JOBS="all,-backup")
    assert run_cli(["migrate"], worker_env).returncode == 0
    worker = Consumer(consumer_env, tmp_path / "worker.log", "--no-periodic", "--workers", "1")
    engine = create_engine(sqlite_url)
    try:
        enqueued = run_cli(["enqueue", "backup"], worker_env)  # a host where backup is enabled
        assert enqueued.returncode == 0, enqueued.stderr
        task_id = enqueued.stdout.strip()
        [run] = wait_until(lambda: [r for r in job_runs(engine, "backup") if r["task_id"] == task_id],
                           what="the consumer's record of the backup request")
    finally:
        code = worker.stop()
        engine.dispose()
    assert code == 0, worker.log()
    assert run["status"] == "skipped"
    assert "backup is disabled here by PROXYOS_JOBS=all,-backup" in run["error"]
    assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups").iterdir())


def test_status_shows_disabled_jobs(worker_env):
    env = dict(worker_env, PROXYOS_JOBS="all,-health,-ingest")
    assert run_cli(["migrate"], env).returncode == 0
    report = json.loads(run_cli(["status", "--json"], env).stdout)
    jobs = {j["job"]: j for j in report["jobs"]}
    assert jobs["health-dispatch"]["enabled"] is False and jobs["health-dispatch"]["next_run_at"] is None
    assert jobs["ingest"]["enabled"] is False
    assert jobs["aggregate"]["enabled"] is True and jobs["aggregate"]["next_run_at"]
    assert report["job_selection"] == {"PROXYOS_JOBS": "all,-health,-ingest",
                                       "disabled": ["health", "health-batch", "health-dispatch", "ingest"]}
    text = run_cli(["status"], env).stdout
    [ingest_line] = [line for line in text.splitlines() if line.startswith("ingest ")]
    assert "disabled" in ingest_line
    assert "disabled by PROXYOS_JOBS=all,-health,-ingest: health, health-batch, health-dispatch, ingest" in text
