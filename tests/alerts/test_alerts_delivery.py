"""Delivery: the outbox to a real webhook receiver and a real SMTP server on loopback,
with retries, the same delivery id on every attempt, and every attempt recorded."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from db.engine import write_transaction
from db.schema import alert_events
from db.sql import new_id
from tasks.alerts import channels, outbox
from tasks.alerts.deliver import SIGNATURE_HEADER, signature
from tasks.alerts.settings import AlertSettings
from tasks.certs.credentials import encrypt
from tests.toolkit.factories import SECRET, set_system_setting
from tests.toolkit.servers.alert_receivers import WebhookReceiver

from .conftest import FAST, deliver_all, outbox_rows

BODY = {"source": "proxyos", "event": "alert.fired", "rule": "r", "message": "m", "detail": {"a": 1},
        "firedAt": "2024-01-01T00:00:00.000Z"}


def _event(engine, body: dict = BODY) -> list[str]:
    """An alert_events row and its notifications, in one transaction, as the evaluator writes them."""
    with write_transaction(engine) as conn:
        event_id = new_id()
        conn.execute(alert_events.insert().values(id=event_id, rule_id="r", message=body["message"], fired_at=1))
        return outbox.add(conn, event_id, json.dumps(body), now=int(time.time()))


def _smtp_setting(server, password: str, **extra) -> dict:
    return {"host": "127.0.0.1", "port": server.port, "secure": False, "user": "alerts@example.test",
            "pass": password, "from": "proxyos@example.test", "to": "ops@example.test, oncall@example.test", **extra}


def test_webhook_retries_500_and_timeout_then_delivers_once_with_one_delivery_id(any_engine):
    receiver = WebhookReceiver(script=[500, "hang"], hang_seconds=3)
    try:
        set_system_setting(any_engine, "alert_webhook", receiver.url)
        [delivery_id] = _event(any_engine)
        settings = AlertSettings(timeout=1.0, backoff=0.1, backoff_max=0.5, webhook_secret="sign-me-0123456789")
        rows = deliver_all(any_engine, settings)
        assert [r["status"] for r in rows] == ["delivered"]
        assert [r.answered for r in receiver.requests] == [500, "hang", 200]
        assert {r.delivery_id for r in receiver.requests} == {delivery_id}
        last = receiver.requests[-1]
        assert last.body == BODY
        assert last.headers[SIGNATURE_HEADER] == signature("sign-me-0123456789", json.dumps(BODY).encode())
        tries = outbox.attempts(any_engine, [delivery_id])
        assert [(a["attempt"], a["outcome"]) for a in tries] == [(1, "error"), (2, "error"), (3, "ok")]
        assert "HTTP 500" in tries[0]["error"] and "no answer within 1 s" in tries[1]["error"]
        assert receiver.url not in json.dumps(tries)
    finally:
        receiver.stop()


def test_smtp_with_login_and_an_encrypted_password(engine, smtp_server, caplog):
    password = "smtp-pass-Zq81!x"
    set_system_setting(engine, "alert_smtp", _smtp_setting(smtp_server, encrypt(password, SECRET)))
    [delivery_id] = _event(engine)
    with caplog.at_level(logging.DEBUG):
        rows = deliver_all(engine, AlertSettings(timeout=5.0, secret=SECRET))
    assert [r["status"] for r in rows] == ["delivered"]
    [message] = smtp_server.messages
    assert message["Subject"] == "[ProxyOS Alert] r"
    assert message["X-ProxyOS-Delivery"] == delivery_id
    assert message["To"] == "ops@example.test, oncall@example.test"
    assert "Alert fired: m" in message.get_payload()
    assert password not in caplog.text


def test_a_wrong_smtp_password_is_a_recorded_error_and_retried(engine, smtp_server):
    set_system_setting(engine, "alert_smtp", _smtp_setting(smtp_server, "wrong-password-123"))
    [delivery_id] = _event(engine)
    outbox.deliver_due(engine, FAST)
    [row] = outbox_rows(engine)
    assert row["status"] == "pending" and row["last_error"] == "smtp: login refused (535)"
    assert "wrong-password-123" not in json.dumps(outbox.attempts(engine, [delivery_id]))


def test_a_bad_smtp_setting_leaves_the_webhook_alone(engine, receiver):
    set_system_setting(engine, "alert_webhook", receiver.url)
    set_system_setting(engine, "alert_smtp", "{not json")
    _event(engine)
    outbox.deliver_due(engine, FAST)
    by_channel = {r["channel"]: r for r in outbox_rows(engine)}
    assert by_channel["webhook"]["status"] == "delivered"
    assert by_channel["smtp"]["status"] == "pending"
    assert by_channel["smtp"]["last_error"] == "alert_smtp in system_settings is not JSON"


def test_given_up_after_the_retry_time(engine):
    set_system_setting(engine, "alert_webhook", "http://127.0.0.1:1/closed")
    _event(engine)
    rows = deliver_all(engine, AlertSettings(timeout=1.0, backoff=0.05, backoff_max=0.1, retry_hours=0.0001))
    assert rows[0]["status"] == "failed" and rows[0]["attempts"] >= 1
    assert rows[0]["last_error"] == "webhook: could not connect"


def test_no_channel_no_notification(engine):
    assert _event(engine) == []


def test_concurrent_deliverers_send_each_notification_once(any_engine, receiver):
    set_system_setting(any_engine, "alert_webhook", receiver.url)
    ids = [i for _ in range(30) for i in _event(any_engine)]
    threads = [threading.Thread(target=outbox.deliver_due, args=(any_engine, FAST)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deliver_all(any_engine)
    assert sorted(r.delivery_id for r in receiver.requests) == sorted(ids)


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=2))


@hsettings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=40),
    st.dictionaries(st.sampled_from(["host", "port", "secure", "user", "pass", "from", "to", "x"]), _values)
    .map(json.dumps),
))
def test_any_smtp_setting_is_usable_or_one_clear_error(engine, value):
    set_system_setting(engine, "alert_smtp", value)
    with engine.connect() as conn:
        try:
            config = channels.smtp(conn, None)
        except channels.ChannelError as exc:
            assert str(exc).startswith("alert_smtp ") or "PROXYOS_SECRET" in str(exc)
        else:
            assert config.host and config.to and 1 <= config.port <= 65535


@pytest.mark.parametrize("value", ["", "ftp://x", "not a url", "http://"])
def test_a_bad_webhook_setting_is_one_clear_error(engine, value):
    set_system_setting(engine, "alert_webhook", value)
    with engine.connect() as conn, pytest.raises(channels.ChannelError, match="^alert_webhook "):
        channels.webhook_url(conn)
