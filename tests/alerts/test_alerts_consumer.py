"""With `proxyos-worker run`: a route's upstream stopped and started again gives one down
and one recovery message at the webhook; a consumer SIGKILLed during a delivery loses
nothing (another consumer delivers it again with the same delivery id)."""

from __future__ import annotations

import time

import sqlalchemy as sa

from tasks.alerts.outbox import attempts
from tests.toolkit.factories import add_alert_rule, add_route, set_system_setting, ups
from tests.toolkit.processes import Consumer, run_cli, wait_until
from tests.toolkit.servers.alert_receivers import WebhookReceiver
from tests.toolkit.servers.upstreams import start_http_upstream

from .conftest import outbox_rows, set_route_status


def test_upstream_down_and_up_gives_one_down_and_one_recovery(engine, worker_env, tmp_path, receiver):
    upstream = start_http_upstream()
    port = upstream.server_address[1]
    set_system_setting(engine, "alert_webhook", receiver.url)
    add_route(engine, domain="app.example.test", upstreams=ups(upstream.address), health_check_interval=5)
    add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0})
    env = dict(worker_env, PROXYOS_HEALTH_FALL="1", PROXYOS_HEALTH_RISE="1", PROXYOS_HEALTH_TIMEOUT="1")
    worker = Consumer(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: upstream.seen, timeout=30, what="the first health check")
        upstream.stop()
        stopped = time.time()
        wait_until(lambda: receiver.requests, timeout=60, what="the down message")
        print(f"down to webhook: {receiver.requests[0].at - stopped:.1f} s (interval 5 s, fall 1)")
        upstream = start_http_upstream(port=port)
        wait_until(lambda: len(receiver.requests) >= 2, timeout=60, what="the recovery message")
        time.sleep(6)  # another check and evaluation: nothing more is sent
    finally:
        worker.stop()
        upstream.stop()
    assert [r.body["event"] for r in receiver.requests] == ["alert.fired", "alert.resolved"], worker.log()[-2000:]


def test_a_consumer_killed_during_delivery_loses_nothing(engine, worker_env, tmp_path):
    receiver = WebhookReceiver(script=["hang"], hang_seconds=60)
    try:
        set_system_setting(engine, "alert_webhook", receiver.url)
        route = add_route(engine)
        add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0})
        set_route_status(engine, route, "unhealthy")
        env = dict(worker_env, PROXYOS_ALERTS_TIMEOUT="60", PROXYOS_HEALTH_TIMEOUT="1")
        assert run_cli(["migrate"], env).returncode == 0
        first = Consumer(env, tmp_path / "first.log")
        wait_until(lambda: receiver.requests, timeout=60, what="the first delivery to start")
        first.process.kill()
        first.kill()
        second = Consumer(env, tmp_path / "second.log")
        try:
            wait_until(lambda: [r["status"] for r in outbox_rows(engine)] == ["delivered"], timeout=60,
                       what="the notification delivered by the second consumer")
        finally:
            second.stop()
        [row] = outbox_rows(engine)
        assert {r.delivery_id for r in receiver.requests} == {row["id"]}
        assert len(receiver.requests) == 2
        tries = attempts(engine, [row["id"]])
        assert [t["outcome"] for t in tries] == [None, "ok"]  # the first was interrupted
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alert_events")).scalar() == 1
    finally:
        receiver.stop()
