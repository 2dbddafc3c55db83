"""Alerts run when there is news, not at their 30-s tick: a health check that changes a
state puts `alerts-evaluate` on the queue; an evaluation with a group window still open
schedules itself for when it closes (once); a failed delivery schedules `notify` for its
retry. Checked on a real SQLite Huey queue, executing what the consumer would."""

from __future__ import annotations

import datetime
import time

import sqlalchemy as sa

from tests.toolkit.factories import add_alert_rule, add_route, set_system_setting, ups
from tests.toolkit.processes import free_port
from tests.toolkit.servers.alert_receivers import WebhookReceiver
from workers import config
from workers.consumer import build_queue

from .conftest import outbox_rows, set_route_status


def _queue(worker_env: dict, **env: str):
    settings = config.load({**worker_env, **env})
    return build_queue(settings)


def _names(tasks) -> list[str]:
    return sorted(task.name for task in tasks)


def _eta(task) -> float:
    return task.eta.replace(tzinfo=datetime.UTC).timestamp()


def _run_all_pending(huey) -> list[str]:
    """What the consumer's workers do with the queue: execute each task that is ready,
    put one whose eta is later on the schedule; the names of those executed."""
    ran = []
    while huey.pending_count():
        task = huey.dequeue()
        if huey.ready_to_run(task):
            ran.append(task.name)
        huey.execute(task)  # or onto the schedule, for its eta
    return ran


def test_a_check_that_changes_a_state_nudges_alerts_evaluate(engine, worker_env):
    route = add_route(engine, domain="down.example.test", upstreams=ups(f"127.0.0.1:{free_port()}"),
                      health_check_interval=30)
    set_route_status(engine, route, "healthy")
    queue, ctx = _queue(worker_env, PROXYOS_HEALTH_FALL="1", PROXYOS_HEALTH_TIMEOUT="1")
    huey = queue.huey
    try:
        queue.enqueue("health-batch", routes=[route], route_due=[time.time()])
        assert _run_all_pending(huey) == ["health-batch", "alerts-evaluate"]  # refused: unhealthy now
        queue.enqueue("health-batch", routes=[route], route_due=[time.time()])
        assert _run_all_pending(huey) == ["health-batch"]  # still down: no change, no nudge
    finally:
        ctx.close()


def test_a_consumer_without_alerts_is_not_nudged(engine, worker_env):
    route = add_route(engine, upstreams=ups(f"127.0.0.1:{free_port()}"), health_check_interval=30)
    set_route_status(engine, route, "healthy")
    queue, ctx = _queue(worker_env, PROXYOS_HEALTH_FALL="1", PROXYOS_HEALTH_TIMEOUT="1", PROXYOS_JOBS="health")
    try:
        queue.enqueue("health-batch", routes=[route], route_due=[time.time()])
        assert _run_all_pending(queue.huey) == ["health-batch"]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT status FROM route_health_state")).scalar() == "unhealthy"
    finally:
        ctx.close()


def test_an_open_group_window_schedules_one_evaluation_when_it_closes(engine, worker_env, receiver):
    set_system_setting(engine, "alert_webhook", receiver.url)
    add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 40})
    first, second = add_route(engine, domain="a.example.test"), add_route(engine, domain="b.example.test")
    queue, ctx = _queue(worker_env)
    huey = queue.huey
    try:
        set_route_status(engine, first, "unhealthy")
        opened = time.time()
        queue.enqueue("alerts-evaluate")
        assert _run_all_pending(huey) == ["alerts-evaluate"]
        [wake] = huey.scheduled()
        assert wake.name == "alerts-evaluate"
        assert opened + 40 - 2 <= _eta(wake) <= time.time() + 40 + 1

        set_route_status(engine, second, "unhealthy")  # joins the open group
        queue.enqueue("alerts-evaluate")
        assert _run_all_pending(huey) == ["alerts-evaluate"]
        assert _names(huey.scheduled()) == ["alerts-evaluate"]  # the same wake-up, not a second

        with engine.begin() as conn:  # 40 s pass: the window has closed when the wake-up comes
            conn.execute(sa.text("UPDATE alert_state SET pending_since = pending_since - 40"))
        [wake] = huey.read_schedule(wake.eta)
        huey.execute(wake, timestamp=wake.eta)
        assert _names(huey.pending()) == ["notify"]
        assert _run_all_pending(huey) == ["notify"]
        [body] = [r.body for r in receiver.requests]
        assert body["event"] == "alert.fired" and body["detail"]["count"] == 2
    finally:
        ctx.close()


def test_a_failed_delivery_schedules_notify_for_its_retry(engine, worker_env):
    receiver = WebhookReceiver(script=[500])
    try:
        set_system_setting(engine, "alert_webhook", receiver.url)
        add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0})
        set_route_status(engine, add_route(engine), "unhealthy")
        queue, ctx = _queue(worker_env, PROXYOS_ALERTS_BACKOFF="30")
        huey = queue.huey
        try:
            queue.enqueue("alerts-evaluate")
            failed_at = time.time()
            assert _run_all_pending(huey) == ["alerts-evaluate", "notify"]
            assert [r.answered for r in receiver.requests] == [500]
            [retry] = huey.scheduled()
            assert retry.name == "notify"
            assert failed_at + 30 - 2 <= _eta(retry) <= time.time() + 30 + 1
            assert [r["status"] for r in outbox_rows(engine)] == ["pending"]
        finally:
            ctx.close()
    finally:
        receiver.stop()
