"""The jobs: the dispatcher fans out batches (ids and due times only), a batch checks
them, `health` on demand; and the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import time

import sqlalchemy as sa

from db.engine import create_engine, write_transaction
from db.migrate import upgrade
from db.schema import health_checks, route_health_state, stream_health_checks, task_runs
from tests.toolkit.factories import add_route, add_stream, ups
from tests.toolkit.processes import Consumer, run_cli
from workers import config
from workers.registry import JobContext, discover
from workers.runner import run_job


def _context(url, tmp_path, enqueued: list) -> JobContext:
    settings = config.load(
        {
            "PROXYOS_DATABASE_URL": url,
            "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db",
            "PROXYOS_HEALTH_TIMEOUT": "1",
        }
    )
    return JobContext(
        settings, enqueue=lambda job, delay=None, **o: enqueued.append((job, o)) or "t"
    )


def _make_due_now(engine) -> None:
    with write_transaction(engine) as conn:
        conn.execute(route_health_state.update().values(next_due_at=time.time() - 0.5))


def test_dispatcher_enqueues_batches_that_check_the_due_routes(
    engine, sqlite_url, tmp_path, upstream, closed_port
):
    jobs = discover()
    enqueued: list = []
    ctx = _context(sqlite_url, tmp_path, enqueued)
    good = add_route(engine, upstreams=ups(upstream.address), health_check_interval=30)
    bad = add_route(engine, upstreams=ups(closed_port), health_check_interval=30)
    add_route(engine, upstreams=ups(upstream.address), enabled=0)
    run_job(ctx, jobs["health-dispatch"])  # schedules every route on its phase
    _make_due_now(engine)
    enqueued.clear()
    result = run_job(ctx, jobs["health-dispatch"])
    assert result.status == "ok", result.error
    assert result.summary == {"due": 2, "batches": 1}
    ((name, options),) = enqueued
    assert name == "health-batch"
    assert sorted(options["routes"]) == sorted([good, bad])
    assert all(isinstance(t, float) for t in options["route_due"])
    json.dumps(options)  # ids and numbers only
    batch = run_job(ctx, jobs["health-batch"], options)
    assert batch.status == "ok", batch.error
    assert batch.summary["healthy"] == 1 and batch.summary["unhealthy"] == 1
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(sa.select(health_checks.c.route_id, health_checks.c.overall_status)).all()
        )
        lateness = conn.execute(
            sa.select(route_health_state.c.last_lateness_ms).where(
                route_health_state.c.route_id == good
            )
        ).scalar_one()
    assert statuses == {good: "healthy", bad: "unhealthy"}
    assert lateness is not None
    enqueued.clear()
    # both are new (unknown) and their first result is a streak toward rise or fall: each is
    # re-checked after the fast interval (5 s), within this dispatch's look-ahead
    again = run_job(ctx, jobs["health-dispatch"])
    assert again.summary == {"due": 2, "batches": 1}
    ((_, options),) = enqueued
    assert sorted(options["routes"]) == sorted([good, bad])
    enqueued.clear()
    assert (
        run_job(ctx, jobs["health-dispatch"]).status == "skipped"
    )  # nothing more due until the next slot on their phase
    assert enqueued == []
    ctx.close()


def test_dispatcher_splits_into_batches(engine, sqlite_url, tmp_path):
    enqueued: list = []
    ctx = _context(sqlite_url, tmp_path, enqueued)
    ctx.settings.env["PROXYOS_HEALTH_BATCH_SIZE"] = "2"
    for _ in range(5):
        add_route(engine, upstreams=ups("127.0.0.1:1"))
    add_stream(engine, "127.0.0.1", 1)
    jobs = discover()
    run_job(ctx, jobs["health-dispatch"])
    _make_due_now(engine)
    with write_transaction(engine) as conn:
        conn.execute(
            sa.text("UPDATE stream_health_state SET next_due_at = :t"), {"t": time.time() - 0.5}
        )
    enqueued.clear()
    assert run_job(ctx, jobs["health-dispatch"]).summary == {"due": 6, "batches": 3}
    assert sum(len(o["routes"]) + len(o["streams"]) for _, o in enqueued) == 6
    ctx.close()


def test_on_demand_refuses_a_route_that_is_not_checked(engine, sqlite_url, tmp_path):
    ctx = _context(sqlite_url, tmp_path, [])
    off = add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_enabled=0)
    result = run_job(ctx, discover()["health"], {"route": off})
    assert result.status == "skipped"
    assert result.error == f"route {off} is not checked: health checks are turned off for the route"
    ctx.close()


def _env(worker_env, **extra):
    return {**worker_env, "PROXYOS_HEALTH_TIMEOUT": "1", **extra}


def test_cli_run_once_checks_everything_and_prints_results(
    engine, worker_env, upstream, closed_port
):
    good = add_route(engine, upstreams=ups(upstream.address), name="good-route")
    add_route(engine, upstreams=ups(upstream.address, closed_port), name="half-route")
    add_route(engine, upstreams="not json", name="broken-route")
    port = int(upstream.address.split(":")[1])
    add_stream(engine, "127.0.0.1", port, listen_port=7001)
    done = run_cli(["run-once", "health"], _env(worker_env))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "checked 4: 2 healthy, 1 degraded, 1 unhealthy" in out
    assert "good-route" in out and "healthy" in out
    assert "half-route  degraded" in out.replace("  ", "  ") or "half-route" in out
    assert f"{closed_port}: connection refused" in out
    assert "config: upstreams is not valid JSON" in out
    assert "port 7001" in out
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(health_checks)).scalar() == 3
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(stream_health_checks)).scalar() == 1
        )
    one = run_cli(["run-once", "health", "--route", good, "--json"], _env(worker_env))
    assert one.returncode == 0, one.stderr
    summary = json.loads(one.stdout)["summary"]
    assert summary["checked"] == 1
    assert summary["results"][0]["id"] == good


def test_cli_unknown_route_and_bad_setting(engine, worker_env):
    missing = run_cli(["run-once", "health", "--route", "nope"], _env(worker_env))
    assert missing.returncode == 1
    assert "no route with id 'nope'" in missing.stdout
    bad = run_cli(["run-once", "health"], _env(worker_env, PROXYOS_HEALTH_TIMEOUT="soon"))
    assert bad.returncode == 2
    assert "PROXYOS_HEALTH_TIMEOUT" in bad.stderr + bad.stdout


def test_cli_status_shows_counts_and_lateness(engine, worker_env, upstream, closed_port):
    add_route(engine, upstreams=ups(upstream.address))
    add_route(engine, upstreams=ups(closed_port))
    env = _env(worker_env, PROXYOS_HEALTH_RISE="1", PROXYOS_HEALTH_FALL="1")
    assert run_cli(["run-once", "health"], env).returncode == 0
    status = run_cli(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    health = json.loads(status.stdout)["health"]
    assert (health["routes_healthy"], health["routes_unhealthy"], health["routes_degraded"]) == (
        1,
        1,
        0,
    )
    assert health["overdue"] == 0
    assert "lateness_p99_ms" in health
    text = run_cli(["status"], env).stdout
    assert "health:" in text and "routes_healthy: 1" in text


def test_consumer_runs_the_schedule_and_queued_checks(engine, sqlite_url, worker_env, upstream, tmp_path):
    """`enqueue health --route ID` and the periodic dispatcher, through a real consumer."""
    queued = add_route(engine, upstreams=ups(upstream.address), health_check_interval=3600, name="queued")
    scheduled = add_route(engine, upstreams=ups(upstream.address), health_check_interval=5, name="scheduled")
    env = _env(worker_env)
    enq = run_cli(["enqueue", "health", "--route", queued], env)
    assert enq.returncode == 0, enq.stderr
    worker = Consumer(env, tmp_path / "worker.log", "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        checked: set = set()
        while (
            checked != {queued, scheduled} and time.monotonic() < deadline and worker.process.poll() is None
        ):
            time.sleep(0.2)  # polling the database: the consumer runs in another process
            with engine.connect() as conn:
                checked = set(
                    conn.execute(sa.select(health_checks.c.route_id).distinct()).scalars()
                )
    finally:
        worker.stop()
    assert checked == {queued, scheduled}, worker.log()[-2000:]
    with engine.connect() as conn:
        jobs = set(
            conn.execute(sa.select(task_runs.c.job).where(task_runs.c.status == "ok")).scalars()
        )
    assert {"health", "health-dispatch", "health-batch"} <= jobs


def test_migration_is_additive_on_an_existing_database(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    upgrade(engine)
    upgrade(engine)  # idempotent
    names = set(sa.inspect(engine).get_table_names())
    assert {
        "stream_health_checks",
        "route_health_state",
        "stream_health_state",
        "health_events",
    } <= names
    engine.dispose()
    os.remove(tmp_path / "p.db")
