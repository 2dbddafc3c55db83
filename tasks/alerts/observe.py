"""What each rule type sees now: one `Observation` per target (a route, a stream, a
certificate, a certificate's expiry threshold), `bad` (the rule should fire), `good` (a
firing should clear) or neither (unknown yet), read from the health state the checks keep
(flap-free: see docs/health.md) and from `certificates`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import certificates, route_health_state, routes, stream_health_state, streams

from .rules import Rule

DAY = 86_400


@dataclass(frozen=True)
class Observation:
    target: str  # alert_state.target
    bad: bool
    good: bool
    label: str  # the target, as a person names it (a domain, a stream)
    message: str  # what a firing says
    route_id: str | None = None
    detail: dict = field(default_factory=dict)


def _health(rule: Rule, rows, kind: str, now: int) -> list[Observation]:
    hold = rule.config["holdMinutes"] * 60
    found = []
    for row in rows:
        label = row.label
        detail = {f"{kind}Id": row.id, "name": label, "status": row.status, "since": row.status_since,
                  "error": row.last_error}
        found.append(Observation(
            target=f"{kind}:{row.id}", label=label, route_id=row.id if kind == "route" else None, detail=detail,
            bad=row.status == "unhealthy" and (row.status_since or now) <= now - hold,
            good=row.status in ("healthy", "degraded"),
            message=f"{kind.capitalize()} {label} is unhealthy" + (f": {row.last_error}" if row.last_error else ""),
        ))
    return found


def route_unhealthy(conn: Connection, rule: Rule, now: int) -> list[Observation]:
    s = route_health_state
    query = (sa.select(routes.c.id, routes.c.domain.label("label"), s.c.status, s.c.status_since, s.c.last_error)
             .join(s, s.c.route_id == routes.c.id))
    if rule.target_route_id:
        query = query.where(routes.c.id == rule.target_route_id)
    return _health(rule, conn.execute(query), "route", now)


def stream_unhealthy(conn: Connection, rule: Rule, now: int) -> list[Observation]:
    s = stream_health_state
    label = ("port " + sa.cast(streams.c.listen_port, sa.Text) + " (" + streams.c.protocol + ")").label("label")
    query = (sa.select(streams.c.id, label, s.c.status, s.c.status_since, s.c.last_error)
             .join(s, s.c.stream_id == streams.c.id))
    if rule.config.get("streamId"):
        query = query.where(streams.c.id == rule.config["streamId"])
    return _health(rule, conn.execute(query), "stream", now)


def _certs(conn: Connection):
    c = certificates
    return conn.execute(sa.select(c.c.id, c.c.domain, c.c.status, c.c.expires_at, c.c.failures, c.c.last_error,
                                  c.c.route_id))


def cert_renewal_failed(conn: Connection, rule: Rule, now: int) -> list[Observation]:
    found = []
    for row in _certs(conn):
        failures = row.failures or 0
        what = (f"is {row.status}" if row.status in ("error", "expired")
                else f"failed to renew {failures} times in a row")
        found.append(Observation(
            target=f"cert:{row.id}", label=row.domain, route_id=row.route_id,
            bad=row.status in ("error", "expired") or failures >= rule.config["failures"],
            good=row.status == "active" and failures == 0,
            message=f"Certificate for {row.domain} {what}" + (f": {row.last_error}" if row.last_error else ""),
            detail={"certificateId": row.id, "domain": row.domain, "status": row.status, "failures": failures,
                    "error": row.last_error, "expiresAt": row.expires_at},
        ))
    return found


def cert_expiring_each(conn: Connection, rule: Rule, now: int) -> list[Observation]:
    """Per certificate, the smallest threshold its expiry has crossed: each threshold
    fires once per certificate (a renewed one, with a new expiry, starts again)."""
    found = []
    for row in _certs(conn):
        if not isinstance(row.expires_at, int) or row.expires_at <= now:
            continue
        left = (row.expires_at - now) / DAY
        crossed = [days for days in rule.config["thresholdsDays"] if left <= days]
        if not crossed:
            continue
        days = min(crossed)
        found.append(Observation(
            target=f"cert:{row.id}:{row.expires_at}:{days}", label=row.domain, route_id=row.route_id,
            bad=True, good=False,
            message=f"Certificate for {row.domain} expires in {round(left)}d",
            detail={"certificateId": row.id, "domain": row.domain, "expiresAt": row.expires_at,
                    "thresholdDays": days},
        ))
    return found


OBSERVERS: dict[str, Callable[[Connection, Rule, int], list[Observation]]] = {
    "route_unhealthy": route_unhealthy,
    "stream_unhealthy": stream_unhealthy,
    "cert_renewal_failed": cert_renewal_failed,
    "cert_expiring_each": cert_expiring_each,
}
RECOVERY_MESSAGES = {"route_unhealthy": "Route {} is healthy again", "stream_unhealthy": "Stream {} is healthy again"}
