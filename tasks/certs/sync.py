"""Keeping `certificates` in step with the routes, the way the dashboard reads them.

The dashboard finds a route's certificate by `certificates.domain == routes.domain`
(exact text) and deletes rows whose domain is no route's. So every enabled route with
tls_mode `dns` gets a `dns01` row whose `domain` is the route's domain as written; the
ACME names (`names`) are normalised apart from it. Routes with the same ACME names share
one certificate (`names.group_routes`): the lead route's row is ordered, the others show
its state. Rows are adopted rather than duplicated: the dashboard's own row for the
route, or a row the workers once stored lower-cased. A route whose row is someone
else's (`ownership`) is left alone and reported."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.schema import cert_dns_records, cert_orders, certificates, routes
from db.sql import new_id

from .isolation import number, system_fault
from .isolation import reason as reason_of
from .names import Group, RouteNames, acme_name, acme_name_or_none, group_routes, route_names

log = logging.getLogger("proxyos.certs.sync")

# What a group's other rows copy from its lead row (never the lease).
MIRRORED = ("status", "issued_at", "expires_at", "last_renewed_at", "renew_at", "names",
            "last_error", "failures", "next_attempt_at")
# What a duplicate the workers stored hands over to the row that is kept.
ADOPTED = MIRRORED + ("ari_cert_id", "ari_next_check_at")


@dataclass(frozen=True)
class SyncedGroup:
    group: Group
    row_ids: tuple[str, ...]  # one per route of the group, the lead's first

    @property
    def lead_id(self) -> str:
        return self.row_ids[0]


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    groups: list[SyncedGroup] = field(default_factory=list)

    def group_of(self, cert_id: str) -> SyncedGroup | None:
        return next((g for g in self.groups if cert_id in g.row_ids), None)


def wants_dns01():
    return sa.and_(routes.c.enabled == 1, routes.c.tls_mode == "dns")


def plan(conn: Connection) -> tuple[list[Group], dict[str, str]]:
    """The certificate groups of the routes that want DNS-01 now, and the routes left out
    (malformed names, or a certificate row the workers do not own), with the reason."""
    wanted = conn.execute(
        sa.select(routes.c.id, routes.c.domain, routes.c.aliases, routes.c.created_at)
        .where(wants_dns01())
        .order_by(routes.c.created_at, routes.c.id)
    ).all()
    domains = [r.domain for r in wanted]
    taken = _rows_by_domain(conn, domains)
    items, problems = [], {}
    for route in wanted:
        try:
            names = route_names(route.domain, route.aliases)
            reason = _foreign(taken.get(route.domain, []), route.id)
        except Exception as exc:  # one route's data, whatever is wrong with it
            if system_fault(exc):
                raise
            detail = str(exc) if isinstance(exc, ValueError) else f"cannot be read ({reason_of(exc)})"
            problems[shown(route.domain)] = f"route {shown(route.domain)}: {detail}"
            continue
        if reason:
            problems[route.domain] = f"route {route.domain}: {reason}"
            continue
        created = number(route.created_at) or 0  # text in the column sorts as the oldest
        items.append(RouteNames(route.id, route.domain, tuple(names), (created, str(route.id))))
    return group_routes(items), problems


def shown(domain: object) -> str:
    """A route's domain for a message: as written when it is text, else its repr."""
    return domain if isinstance(domain, str) else repr(domain)


def sync_certificates(engine: Engine, now: int, route_id: str | None = None) -> SyncResult:
    """Bring the rows of every group (or only the group of `route_id`) in step."""
    result = SyncResult()
    with engine.connect() as conn:
        groups, result.problems = plan(conn)
        rows = conn.execute(sa.select(certificates)).all()
    for group in groups:
        if route_id and route_id not in {r.route_id for r in group.routes}:
            continue
        try:
            synced = _sync_one(engine, group, rows, now, result)
        except Exception as exc:  # this group's rows; the others go on
            if system_fault(exc):
                raise
            domain = group.lead.domain
            result.problems[domain] = (
                f"route {domain}: its certificate row could not be kept in step ({reason_of(exc)})")
            log.warning("%s", result.problems[domain])
            continue
        if synced:
            result.groups.append(synced)
    return result


def _sync_one(engine: Engine, group: Group, rows, now: int, result: SyncResult) -> SyncedGroup | None:
    in_step = _in_step(group, rows)
    if in_step:  # the usual case: no write transaction at all
        return in_step
    with write_transaction(engine) as conn:
        # Decide again under the write lock (the lead route's row lock on PostgreSQL),
        # so two consumers syncing at once never create two rows for one route.
        conn.execute(
            sa.select(routes.c.id).where(routes.c.id == group.lead.route_id).with_for_update()
        )
        return _sync_group(conn, group, now, result)


def _in_step(group: Group, rows) -> SyncedGroup | None:
    """The group's rows when nothing needs writing: one row of its own per route, the
    lead's names current, the others showing the lead's state."""
    found = []
    for route in group.routes:
        ours = [r for r in rows if r.source == "dns01" and r.route_id == route.route_id
                and (r.domain == route.domain or acme_name_or_none(r.domain) == route.names[0])]
        if len(ours) != 1 or ours[0].domain != route.domain:
            return None
        found.append(ours[0])
    lead = found[0]
    if _names(lead) != list(group.names):
        return None
    if any(getattr(row, c) != getattr(lead, c) for row in found[1:] for c in MIRRORED):
        return None
    return SyncedGroup(group, tuple(row.id for row in found))


def mirror_group(engine: Engine, synced: SyncedGroup, now: int) -> int:
    if len(synced.row_ids) < 2:
        return 0
    with write_transaction(engine) as conn:
        return mirror(conn, synced, now)


def mirror(conn: Connection, synced: SyncedGroup, now: int) -> int:
    """Copy the lead row's state to the group's other rows; how many changed."""
    ids = list(synced.row_ids)
    rows = {r.id: r for r in conn.execute(sa.select(certificates).where(certificates.c.id.in_(ids)))}
    lead = rows.get(synced.lead_id)
    changed = 0
    for row_id in ids[1:]:
        row = rows.get(row_id)
        if lead is None or row is None or row.source != "dns01":
            continue
        values = {c: getattr(lead, c) for c in MIRRORED if getattr(row, c) != getattr(lead, c)}
        if values:
            conn.execute(
                certificates.update()
                .where(certificates.c.id == row_id, certificates.c.source == "dns01")
                .values(**values, updated_at=now)
            )
            changed += 1
    return changed


def _sync_group(conn: Connection, group: Group, now: int, result: SyncResult) -> SyncedGroup | None:
    route_ids = [r.route_id for r in group.routes]
    rows = conn.execute(
        sa.select(certificates).where(
            sa.or_(
                certificates.c.domain.in_([r.domain for r in group.routes]),
                sa.and_(certificates.c.source == "dns01", certificates.c.route_id.in_(route_ids)),
            )
        ).order_by(certificates.c.created_at, certificates.c.id)
    ).all()
    row_ids = []
    for route in group.routes:
        reason = _foreign([r for r in rows if r.domain == route.domain], route.route_id)
        if reason:  # written since `plan` read it
            result.problems[route.domain] = f"route {route.domain}: {reason}"
            if route is group.lead:
                return None
            continue
        row_ids.append(_row_for_route(conn, route, rows, now, result))
    names = list(group.names)
    lead = conn.execute(sa.select(certificates).where(certificates.c.id == row_ids[0])).one()
    if _names(lead) != names:
        # Different names need a new certificate: due now, whatever its state.
        conn.execute(
            certificates.update()
            .where(certificates.c.id == lead.id)
            .values(names=json.dumps(names), renew_at=now, next_attempt_at=None, failures=0,
                    updated_at=now)
        )
        if lead.names is not None:
            result.updated.append(group.lead.domain)
    synced = SyncedGroup(group, tuple(row_ids))
    mirror(conn, synced, now)
    return synced


def _row_for_route(conn: Connection, route: RouteNames, rows, now: int, result: SyncResult) -> str:
    """The id of the route's row: the one with its exact domain, else an adopted one the
    workers stored under another spelling of the same name, else a new one."""
    ours = [r for r in rows if r.source == "dns01" and r.route_id == route.route_id]
    exact = [r for r in ours if r.domain == route.domain]
    spelled = [r for r in ours if r.domain != route.domain and acme_name_or_none(r.domain) == route.names[0]]
    if exact:
        keep, duplicates = exact[0], exact[1:] + spelled
    elif spelled:
        keep = max(spelled, key=lambda r: (r.last_renewed_at or 0, -(r.created_at or 0)))
        duplicates = [r for r in spelled if r.id != keep.id]
        conn.execute(
            certificates.update()
            .where(certificates.c.id == keep.id)
            .values(domain=route.domain, updated_at=now)
        )
        result.merged.append(f"{keep.domain} -> {route.domain}")
    else:
        cert_id = new_id()
        conn.execute(
            certificates.insert().values(
                id=cert_id, domain=route.domain, source="dns01", status="provisioning",
                auto_renew=1, route_id=route.route_id, created_at=now, updated_at=now, failures=0,
            )
        )
        result.created.append(route.domain)
        return cert_id
    for duplicate in duplicates:
        if _merge(conn, keep, duplicate, now):
            result.merged.append(f"{duplicate.domain} -> {route.domain}")
    return keep.id


def _merge(conn: Connection, keep, duplicate, now: int) -> bool:
    """Fold a second row of the same route (the workers' lower-cased one, typically) into
    `keep`: its certificate state if newer, its saved order if `keep` has none; then
    delete it. Left for a later run while someone works on it."""
    keep = conn.execute(sa.select(certificates).where(certificates.c.id == keep.id)).one()
    if (duplicate.lease_expires_at or 0) > now or (keep.lease_expires_at or 0) > now:
        return False
    if conn.execute(
        sa.select(sa.func.count()).select_from(cert_dns_records)
        .where(cert_dns_records.c.certificate_id == duplicate.id)
    ).scalar():
        return False
    saved = conn.execute(
        sa.select(cert_orders.c.certificate_id).where(
            cert_orders.c.certificate_id.in_([keep.id, duplicate.id]))
    ).scalars().all()
    if duplicate.id in saved:
        if keep.id in saved:
            return False
        conn.execute(cert_orders.update().where(cert_orders.c.certificate_id == duplicate.id)
                     .values(certificate_id=keep.id))
    if duplicate.last_renewed_at and (duplicate.last_renewed_at > (keep.last_renewed_at or 0)):
        conn.execute(
            certificates.update()
            .where(certificates.c.id == keep.id)
            .values(**{c: getattr(duplicate, c) for c in ADOPTED}, updated_at=now)
        )
    conn.execute(
        sa.delete(certificates).where(
            certificates.c.id == duplicate.id,
            certificates.c.source == "dns01",
            certificates.c.route_id == keep.route_id,
        )
    )
    log.info("certificate row %s (%s) merged into %s (%s)", duplicate.id, duplicate.domain,
             keep.id, keep.domain)
    return True


def _rows_by_domain(conn: Connection, domains: list[str]) -> dict[str, list]:
    found: dict[str, list] = {}
    domains = [d for d in domains if isinstance(d, str)]  # bytes (SQLite keeps them) are no route's domain
    for start in range(0, len(domains), 500):
        query = sa.select(certificates.c.id, certificates.c.domain, certificates.c.source,
                          certificates.c.route_id).where(
            certificates.c.domain.in_(domains[start:start + 500]))
        for row in conn.execute(query):
            found.setdefault(row.domain, []).append(row)
    return found


def _foreign(rows_with_domain, route_id: str) -> str | None:
    """Why the route's certificate row (found by its exact domain, as the dashboard finds
    it) is not the workers' to write, or None."""
    if not rows_with_domain or any(r.source == "dns01" and r.route_id == route_id
                                   for r in rows_with_domain):
        return None
    row = rows_with_domain[0]
    return (
        f"its certificate row {row.id} is not the workers' (source {row.source!r}, "
        f"route {row.route_id or 'none'}); the dashboard makes it a dns01 row of this route "
        "when its certificates page next loads, and the workers take it from there"
    )




def _names(row) -> list[str]:
    """The row's stored ACME names; [] for anything but a JSON list of text."""
    try:
        value = json.loads(row.names) if row.names else None
    except (ValueError, TypeError, RecursionError):
        value = None
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return value
    return []


def cert_names(row) -> list[str]:
    """The ACME names of an owned row (its domain, normalised, when none are stored)."""
    return _names(row) or [acme_name(row.domain)]
