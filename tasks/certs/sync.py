"""Keeping `certificates` in step with the routes: every enabled route with tls_mode
`dns` has a `dns01` row covering its domain and aliases. Rows are never deleted; a route
that stops wanting DNS-01 simply stops being renewed (see `wanted_routes`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.sql import new_id
from db.tables import certificates, routes

log = logging.getLogger("proxyos.certs.sync")


@dataclass(frozen=True)
class SyncResult:
    created: list[str]
    updated: list[str]
    problems: dict[str, str]


def route_names(domain: str, aliases: str | None) -> list[str]:
    """domain + aliases, lower-cased, without duplicates, domain first. Raises ValueError
    with a readable reason for a malformed aliases column."""
    names = [domain.strip().rstrip(".").lower()]
    if aliases:
        try:
            extra = json.loads(aliases)
        except ValueError:
            raise ValueError("aliases is not a JSON list") from None
        if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
            raise ValueError("aliases is not a JSON list of host names")
        for alias in extra:
            alias = alias.strip().rstrip(".").lower()
            if alias and alias not in names:
                names.append(alias)
    for name in names:
        if not name or " " in name or "*" in name[1:] or ".." in name:
            raise ValueError(f"{name!r} is not a host name")
    return names


def wants_dns01():
    return sa.and_(routes.c.enabled == 1, routes.c.tls_mode == "dns")


def sync_certificates(engine: Engine, now: int, route_id: str | None = None) -> SyncResult:
    created, updated, problems = [], [], {}
    with engine.connect() as conn:
        query = sa.select(routes.c.id, routes.c.domain, routes.c.aliases).where(wants_dns01())
        if route_id:
            query = query.where(routes.c.id == route_id)
        wanted = conn.execute(query).all()
        existing = _existing(conn)
    for route in wanted:
        try:
            names = route_names(route.domain, route.aliases)
        except ValueError as exc:
            problems[route.domain] = f"route {route.domain}: {exc}"
            continue
        row = existing.get(route.id)
        if row is not None and _names(row) == names:
            continue
        with write_transaction(engine) as conn:
            # Decide again under the write lock (the route row's lock on PostgreSQL), so
            # two consumers syncing at once never create two rows for one route.
            conn.execute(sa.select(routes.c.id).where(routes.c.id == route.id).with_for_update())
            row = _existing(conn, route.id).get(route.id)
            if row is None:
                cert_id = new_id()
                conn.execute(
                    certificates.insert().values(
                        id=cert_id,
                        domain=names[0],
                        source="dns01",
                        status="provisioning",
                        auto_renew=1,
                        route_id=route.id,
                        names=json.dumps(names),
                        created_at=now,
                        updated_at=now,
                        failures=0,
                    )
                )
                created.append(names[0])
            elif _names(row) != names:
                # Different names need a new certificate: due now, whatever its state.
                conn.execute(
                    certificates.update()
                    .where(certificates.c.id == row.id)
                    .values(
                        domain=names[0],
                        names=json.dumps(names),
                        renew_at=now,
                        next_attempt_at=None,
                        failures=0,
                        updated_at=now,
                    )
                )
                updated.append(names[0])
    return SyncResult(created, updated, problems)


def _existing(conn: Connection, route_id: str | None = None) -> dict[str, sa.Row]:
    query = (
        sa.select(certificates)
        .where(certificates.c.source == "dns01", certificates.c.route_id.is_not(None))
        .order_by(certificates.c.created_at)
    )
    if route_id:
        query = query.where(certificates.c.route_id == route_id)
    rows = conn.execute(query).all()
    return {row.route_id: row for row in rows}  # newest wins


def _names(row) -> list[str]:
    try:
        value = json.loads(row.names) if row.names else None
    except ValueError:
        value = None
    return value if isinstance(value, list) else [row.domain]


def cert_names(row) -> list[str]:
    return _names(row)
