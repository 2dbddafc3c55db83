"""Alerts (migration 0011): ProxyOS's `alert_rules`, `alert_events` and `system_settings`
(as the dashboard defines them; the workers add rules of their own types and events), and
the workers' own `alert_state` (what each rule last said about each target), the
`alert_outbox` of notifications to deliver and the `alert_attempts` made to deliver them.
"""

from __future__ import annotations

from sqlalchemy import Float, Index, Table

from .columns import INT, c, metadata

alert_rules = Table(
    "alert_rules",
    metadata,
    c("id", pk=True),
    c("name", nn=True),
    c("type", nn=True),
    c("target_route_id"),
    c("config", nn=True),  # JSON object (ProxyOS's AlertRuleConfig style: cooldownMinutes, ...)
    c("enabled", INT, nn=True, default=1),
    c("last_fired_at", INT),
    c("created_at", INT, nn=True),
)

alert_events = Table(
    "alert_events",
    metadata,
    c("id", pk=True),
    c("rule_id", nn=True),
    c("route_id"),
    c("message", nn=True),
    c("detail"),  # JSON object
    c("fired_at", INT, nn=True),
)

system_settings = Table(
    "system_settings",
    metadata,
    c("key", pk=True),
    c("value", nn=True),
    c("updated_at", INT, nn=True),
)

# One row per rule and target (`route:ID`, `stream:ID`, `cert:ID`, `cert:ID:EXPIRES:DAYS`):
# whether a firing was notified and not yet cleared, when, and a change waiting for its
# group window to close.
alert_state = Table(
    "alert_state",
    metadata,
    c("rule_id", pk=True),
    c("target", pk=True),
    c("firing", INT, nn=True, default=0),
    c("fired_at", INT),  # the last firing notified (the cooldown counts from here)
    c("pending"),  # fire | clear: a change not notified yet
    c("pending_since", INT),
    c("pending_message"),
    c("pending_detail"),  # JSON object
    c("route_id"),
    c("updated_at", INT, nn=True),
)

# A notification to deliver, written in the transaction of its alert_events row; `id` is
# the delivery id the webhook receives on every attempt. `body` is the webhook's JSON
# (ProxyOS's shape); it holds no secret: channels' settings are read when delivering.
alert_outbox = Table(
    "alert_outbox",
    metadata,
    c("id", pk=True),
    c("event_id", nn=True),
    c("channel", nn=True),  # webhook | smtp
    c("body", nn=True),
    c("status", nn=True, default="pending"),  # pending | delivered | failed
    c("attempts", INT, nn=True, default=0),
    c("next_attempt_at", Float, nn=True),
    c("lease_owner"),
    c("lease_expires_at", Float),
    c("last_error"),
    c("created_at", INT, nn=True),
    c("delivered_at", INT),
    Index("ix_alert_outbox_status_next", "status", "next_attempt_at"),
)

# Every attempt, written when it starts (outcome NULL: the deliverer was stopped during it).
alert_attempts = Table(
    "alert_attempts",
    metadata,
    c("id", pk=True),
    c("outbox_id", nn=True),
    c("attempt", INT, nn=True),
    c("owner", nn=True),
    c("started_at", Float, nn=True),
    c("finished_at", Float),
    c("outcome"),  # ok | error; NULL: interrupted
    c("status_code", INT),
    c("error"),
    Index("ix_alert_attempts_outbox", "outbox_id"),
)
