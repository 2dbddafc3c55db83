"""Fixtures of the alerts tests: a webhook receiver and an SMTP server on loopback, fast
delivery settings, and health state written as the checks write it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import alert_outbox, route_health_state
from tasks.alerts.outbox import deliver_due
from tasks.alerts.settings import AlertSettings
from tests.toolkit.processes import wait_until
from tests.toolkit.servers import serving
from tests.toolkit.servers.alert_receivers import SmtpServer, WebhookReceiver, start_smtp

FAST = AlertSettings(timeout=1.0, backoff=0.1, backoff_max=0.5, lease=10.0)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from serving(WebhookReceiver())


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from serving(start_smtp(user="alerts@example.test", password="smtp-pass-Zq81!x"))


def set_route_status(engine, route_id: str, status: str, since: float | None = None) -> None:
    """The route's flap-free status, as the health checks leave it."""
    since = int(time.time() if since is None else since)
    with write_transaction(engine) as conn:
        values = {"status": status, "status_since": since, "last_error": None if status == "healthy" else "refused"}
        if not conn.execute(route_health_state.update().where(route_health_state.c.route_id == route_id)
                            .values(values)).rowcount:
            conn.execute(route_health_state.insert().values(route_id=route_id, **values))


def outbox_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(alert_outbox).order_by(alert_outbox.c.created_at)).mappings()]


def deliver_all(engine, settings: AlertSettings = FAST, timeout: float = 30.0) -> list[dict]:
    """Run `notify` until nothing is pending; the outbox rows."""
    def done():
        deliver_due(engine, settings)
        rows = outbox_rows(engine)
        return rows if all(r["status"] != "pending" for r in rows) else None

    return wait_until(done, timeout=timeout, what="every notification delivered or given up", interval=0.1)
