"""The outbox: notifications written in the transaction of their `alert_events` row, and
delivered by `deliver_due` (the `notify` job) one at a time under a lease on the row, so
each is delivered once across consumers; one whose deliverer was killed is taken again
(at once on the same host, else when the lease expires) and sent with the same delivery
id. Every attempt is an `alert_attempts` row, written before it starts. A failed attempt
is retried after an exponential back-off, for `retry_hours` after the event."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.leases import LeaseTable, Owner, db_now
from db.schema import alert_attempts, alert_outbox
from db.sql import new_id
from tasks.redaction import redact

from . import channels
from .deliver import DeliveryError, send_email, send_webhook
from .settings import AlertSettings

log = logging.getLogger("proxyos.alerts")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

OUTBOX_LEASES = LeaseTable(alert_outbox, alert_outbox.c.id, alert_outbox.c.lease_owner,
                           alert_outbox.c.lease_expires_at, own_rows=False,
                           scope=lambda: alert_outbox.c.status == PENDING)


def add(conn: Connection, event_id: str, body: str, now: int) -> list[str]:
    """One pending notification per configured channel; returns their delivery ids."""
    ids = []
    for channel in channels.configured(conn):
        delivery_id = new_id()
        conn.execute(alert_outbox.insert().values(
            id=delivery_id, event_id=event_id, channel=channel, body=body, status=PENDING,
            attempts=0, next_attempt_at=float(now), created_at=now))
        ids.append(delivery_id)
    return ids


def _due(conn: Connection) -> sa.Select:
    return (sa.select(alert_outbox.c.id).where(alert_outbox.c.status == PENDING,
                                                alert_outbox.c.next_attempt_at <= db_now(conn))
            .order_by(alert_outbox.c.next_attempt_at))


def nothing_due(engine: Engine) -> str | None:
    """The read-only look: None when a notification is due."""
    with engine.connect() as conn:
        if conn.execute(_due(conn).limit(1)).first() is None:
            return "no notification is due"
    return None


def _start(engine: Engine, delivery_id: str, owner: str) -> tuple[sa.Row, str] | None:
    """Count the attempt and record it; the row and the attempt's id."""
    with write_transaction(engine) as conn:
        where = (alert_outbox.c.id == delivery_id, alert_outbox.c.lease_owner == owner)
        conn.execute(alert_outbox.update().where(*where).values(attempts=alert_outbox.c.attempts + 1))
        row = conn.execute(sa.select(alert_outbox).where(*where)).first()
        if row is None:
            return None
        attempt_id = new_id()
        conn.execute(alert_attempts.insert().values(id=attempt_id, outbox_id=delivery_id, attempt=row.attempts,
                                                    owner=owner, started_at=time.time()))
    return row, attempt_id


def _send(engine: Engine, row: sa.Row, settings: AlertSettings) -> int | None:
    with engine.connect() as conn:
        if row.channel == "webhook":
            url = channels.webhook_url(conn)
            return send_webhook(url, row.id, row.body, settings)
        smtp = channels.smtp(conn, settings.secret)
    send_email(smtp, row.id, row.body, settings)
    return None


def _finish(engine: Engine, row: sa.Row, attempt_id: str, owner: str, error: str | None,
            status_code: int | None, settings: AlertSettings, now: float) -> str:
    given_up = error is not None and now + settings.delay(row.attempts) > row.created_at + settings.retry_hours * 3600
    status = DELIVERED if error is None else FAILED if given_up else PENDING
    with write_transaction(engine) as conn:
        conn.execute(alert_attempts.update().where(alert_attempts.c.id == attempt_id).values(
            finished_at=now, outcome="ok" if error is None else "error", status_code=status_code, error=error))
        values = {"status": status, "lease_owner": None, "lease_expires_at": None, "last_error": error}
        if status == DELIVERED:
            values["delivered_at"] = int(now)
        else:
            values["next_attempt_at"] = db_now(conn) + settings.delay(row.attempts)
        conn.execute(alert_outbox.update().where(alert_outbox.c.id == row.id,
                                                 alert_outbox.c.lease_owner == owner).values(values))
    return status


def deliver_one(engine: Engine, delivery_id: str, settings: AlertSettings, owner: str,
                clock: Callable[[], float] = time.time) -> str | None:
    """Take the lease on one notification, make one attempt, record it; the resulting
    status, or None when another consumer holds it."""
    if not OUTBOX_LEASES.take(engine, delivery_id, owner, settings.lease):
        return None
    started = _start(engine, delivery_id, owner)
    if started is None:
        return None
    row, attempt_id = started
    error, status_code = None, None
    try:
        status_code = _send(engine, row, settings)
    except (DeliveryError, channels.ChannelError) as exc:
        error, status_code = redact(str(exc)), getattr(exc, "status_code", None)
    except Exception as exc:  # a bug must not stop the other notifications
        error = redact(f"{type(exc).__name__}: {exc}")
    status = _finish(engine, row, attempt_id, owner, error, status_code, settings, clock())
    if error:
        log.warning("notification %s (%s, attempt %d) failed: %s%s", row.id, row.channel, row.attempts, error,
                    "; given up" if status == FAILED else "; will retry")
    return status


def deliver_due(engine: Engine, settings: AlertSettings, clock: Callable[[], float] = time.time,
                owner: Owner | None = None) -> dict:
    """Deliver what is due, one notification at a time (a claim never outlives its
    attempt), up to `settings.batch`."""
    owner_text = str(owner or Owner.here())
    with engine.connect() as conn:
        due = [r[0] for r in conn.execute(_due(conn).limit(settings.batch))]
    counts = {DELIVERED: 0, PENDING: 0, FAILED: 0, "busy": 0}
    for delivery_id in due:
        status = deliver_one(engine, delivery_id, settings, owner_text, clock)
        counts[status or "busy"] += 1
    summary = {"due": len(due), "delivered": counts[DELIVERED], "retrying": counts[PENDING],
               "given_up": counts[FAILED], "busy": counts["busy"]}
    wait = next_attempt_in(engine)
    if wait is not None:
        summary["next_attempt_in"] = round(max(wait, 0.0), 1)
    return summary


def next_attempt_in(engine: Engine) -> float | None:
    """Seconds until the next pending notification's attempt (by the database's clock),
    or None when none is pending."""
    with engine.connect() as conn:
        soonest = sa.select(sa.func.min(alert_outbox.c.next_attempt_at)).where(alert_outbox.c.status == PENDING)
        return conn.execute(sa.select(soonest.scalar_subquery() - db_now(conn))).scalar()


def attempts(engine: Engine, delivery_ids: Iterable[str]) -> list[dict]:
    """The attempts of these notifications, oldest first (for the CLI and tests)."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(alert_attempts).where(alert_attempts.c.outbox_id.in_(list(delivery_ids)))
            .order_by(alert_attempts.c.started_at)).mappings()]
