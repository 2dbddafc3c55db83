"""What `proxyos-worker alerts` does: list, add, enable and disable the workers' rules in
ProxyOS's `alert_rules`, and send a test notification through a channel."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.schema import alert_rules, routes
from db.sql import new_id

from . import channels
from .deliver import send_email, send_webhook
from .rules import TARGETED, TYPES, RuleError, parse_config
from .settings import AlertSettings


def list_rules(engine: Engine) -> list[dict]:
    """Every rule of the workers' types, enabled or not, its config with the defaults
    filled in, or the problem that makes the evaluator skip it."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alert_rules).where(alert_rules.c.type.in_(list(TYPES))).order_by(alert_rules.c.created_at)
        ).all()
    listed = []
    for row in rows:
        item = {"id": row.id, "name": row.name, "type": row.type, "route": row.target_route_id,
                "enabled": bool(row.enabled), "last_fired_at": row.last_fired_at, "config": None, "problem": None}
        try:
            item["config"] = parse_config(str(row.name), row.type, row.config)
        except RuleError as exc:
            item["problem"] = str(exc)
        listed.append(item)
    return listed


def add_rule(engine: Engine, type_: str, name: str, config: str = "{}", route: str | None = None,
             now: float | None = None) -> dict:
    """A new, enabled rule; RuleError (nothing written) for an unknown type, a bad config
    or a route that does not exist."""
    if not name.strip():
        raise RuleError("an alert rule needs a name")
    parsed = parse_config(name, type_, config)
    if route is not None and type_ not in TARGETED:
        raise RuleError(f"alert rule {name!r}: --route applies only to {', '.join(TARGETED)}")
    row = {"id": new_id(), "name": name, "type": type_, "target_route_id": route,
           "config": json.dumps(json.loads(config), separators=(",", ":")), "enabled": 1,
           "created_at": int(time.time() if now is None else now)}
    with write_transaction(engine) as conn:
        if route is not None and conn.execute(sa.select(routes.c.id).where(routes.c.id == route)).first() is None:
            raise RuleError(f"alert rule {name!r}: no route with id {route!r}")
        conn.execute(alert_rules.insert().values(row))
    return {**row, "enabled": True, "config": parsed}


def set_enabled(engine: Engine, rule_id: str, enabled: bool) -> None:
    """Enable or disable one of the workers' rules (ProxyOS's own are the dashboard's)."""
    with write_transaction(engine) as conn:
        changed = conn.execute(
            alert_rules.update()
            .where(alert_rules.c.id == rule_id, alert_rules.c.type.in_(list(TYPES)))
            .values(enabled=1 if enabled else 0)
        ).rowcount
    if not changed:
        raise RuleError(f"no alert rule of the workers' types with id {rule_id!r} (see `proxyos-worker alerts list`)")


def test_channel(engine: Engine, channel: str, settings: AlertSettings, now: float | None = None) -> str:
    """Send one test notification through `channel` (webhook or smtp) now, not through the
    outbox; returns what was done. ChannelError / DeliveryError say what went wrong."""
    fired = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    body = json.dumps({"source": "proxyos-workers", "event": "alert.test", "rule": "test",
                       "message": "Test notification from the ProxyOS workers", "detail": {},
                       "firedAt": fired.isoformat(timespec="milliseconds").replace("+00:00", "Z")})
    delivery_id = new_id()
    with engine.connect() as conn:
        if channel == "webhook":
            url = channels.webhook_url(conn)
        elif channel == "smtp":
            smtp = channels.smtp(conn, settings.secret)
        else:
            raise channels.ChannelError(f"unknown channel {channel!r}: webhook or smtp")
    if channel == "webhook":
        status = send_webhook(url, delivery_id, body, settings)
        return f"webhook ({channels.WEBHOOK}) answered HTTP {status}; delivery id {delivery_id}"
    send_email(smtp, delivery_id, body, settings)
    return f"e-mail sent through {smtp.host}:{smtp.port} to {', '.join(smtp.to)}; delivery id {delivery_id}"
