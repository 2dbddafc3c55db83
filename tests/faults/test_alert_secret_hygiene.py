"""Secret hygiene of notifications through a real consumer (LOG_LEVEL=debug): the SMTP
password (kept encrypted with PROXYOS_SECRET in `alert_smtp`, as ProxyOS keeps it), the
webhook signing secret and PROXYOS_SECRET appear nowhere in the logs, the CLI's output,
the database's files (alert_events, alert_outbox, alert_attempts, task_runs ...) or the
queue's files, after a webhook that failed before it accepted and a mail sent with login."""

from __future__ import annotations

import sqlalchemy as sa

from db.engine import create_engine
from tasks.certs.credentials import encrypt
from tests.alerts.conftest import outbox_rows, set_route_status
from tests.toolkit.factories import add_alert_rule, add_route, new_secret, set_system_setting
from tests.toolkit.leaks import FileSnapshots, leaks, needles
from tests.toolkit.processes import Consumer, run_cli, wait_until
from tests.toolkit.servers.alert_receivers import WebhookReceiver, start_smtp

SMTP_USER = "alerts@example.test"


def test_no_alert_secret_anywhere_after_deliveries(worker_env, tmp_path):
    secret, password, signing = new_secret(), "smtp-" + new_secret(), "sign-" + new_secret()
    smtp = start_smtp(user=SMTP_USER, password=password)
    receiver = WebhookReceiver(script=[500])
    env = dict(worker_env, LOG_LEVEL="debug", PROXYOS_SECRET=secret, PROXYOS_ALERTS_WEBHOOK_SECRET=signing,
               PROXYOS_ALERTS_BACKOFF="0.5")
    snapshots = FileSnapshots(tmp_path, "queue.db*")
    outputs = []
    try:
        assert run_cli(["migrate"], env).returncode == 0
        engine = create_engine(env["PROXYOS_DATABASE_URL"])
        set_system_setting(engine, "alert_webhook", receiver.url)
        set_system_setting(engine, "alert_smtp", {
            "host": "127.0.0.1", "port": smtp.port, "secure": False, "user": SMTP_USER,
            "pass": encrypt(password, secret), "from": "proxyos@example.test", "to": "ops@example.test"})
        add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0})
        set_route_status(engine, add_route(engine, health_check_enabled=0), "unhealthy")
        consumer = Consumer(env, tmp_path / "worker.log")
        try:
            wait_until(lambda: sorted(r["status"] for r in outbox_rows(engine)) == ["delivered", "delivered"],
                       timeout=60, what="the webhook and the mail delivered")
            for args in (["status"], ["alerts", "list"], ["alerts", "test", "smtp"]):
                shown = run_cli(args, env)
                assert shown.returncode == 0, shown.stderr
                outputs += [shown.stdout, shown.stderr]
        finally:
            assert consumer.stop() == 0
        with engine.connect() as conn:
            attempts = conn.execute(sa.text("SELECT count(*) FROM alert_attempts")).scalar()
        engine.dispose()
    finally:
        queue_bytes = snapshots.stop()
        receiver.stop()
        smtp.stop()
    assert [r.answered for r in receiver.requests] == [500, 200]
    assert attempts == 3 and len(smtp.messages) == 2  # the alert, and `alerts test smtp`

    secret_bytes = needles(secret, password, signing)
    log = consumer.log_path.read_bytes() + "".join(outputs).encode()
    assert b"DEBUG" in log, "the consumer did not log at debug level"
    assert not leaks(log, secret_bytes), "a secret is in the logs or the CLI's output"
    database = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("proxyos.db*")))
    assert b"alert.fired" in database  # the event and its notification are in there
    assert not leaks(database, secret_bytes), "a secret is in the database"
    queue_bytes += b"".join(p.read_bytes() for p in sorted(tmp_path.glob("queue.db*")))
    assert not leaks(queue_bytes, secret_bytes), "a secret is in the queue"
