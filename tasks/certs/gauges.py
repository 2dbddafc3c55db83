"""What `GET /metrics` reads of certificates: one query over `certificates` (with their
route's TLS mode and their `cert_deployments` row), one row per certificate. The next
renewal follows `listing.rows` (what `proxyos-worker certs` shows) without its grouping
of shared certificates: a retry time while one is failing or in flight, else the
renewal time, for the certificates the workers renew."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import cert_deployments, certificates, routes

from .isolation import number
from .ownership import is_owned
from .policy import renewal_time

RETRYING = ("error", "expired", "provisioning", "renewing")


@dataclass(frozen=True)
class CertificateGauges:
    id: str
    domain: str
    expires_at: float | None
    next_renewal_at: float | None  # None: the workers do not renew it
    failures: int
    deployed: bool | None  # None: the workers never loaded it into Caddy; False: waiting


def read(conn: Connection, now: float) -> list[CertificateGauges]:
    c, d = certificates, cert_deployments
    found = conn.execute(
        sa.select(c.c.id, c.c.domain, c.c.source, c.c.status, c.c.issued_at, c.c.expires_at, c.c.renew_at,
                  c.c.auto_renew, c.c.failures, c.c.next_attempt_at, routes.c.tls_mode,
                  routes.c.enabled.label("route_enabled"), d.c.certificate_id.label("deployment"),
                  d.c.pending_since)
        .outerjoin(routes, routes.c.id == c.c.route_id)
        .outerjoin(d, d.c.certificate_id == c.c.id)
        .order_by(c.c.id)
    ).all()
    out = []
    for row in found:
        renewing = is_owned(row.source, row.tls_mode) and row.route_enabled and row.auto_renew
        if not renewing:
            next_at = None
        elif row.status in RETRYING and number(row.next_attempt_at):
            next_at = number(row.next_attempt_at)
        elif row.status == "provisioning":
            next_at = now
        else:
            next_at = renewal_time(row)
        out.append(CertificateGauges(
            id=row.id, domain=row.domain, expires_at=number(row.expires_at), next_renewal_at=next_at,
            failures=int(number(row.failures) or 0),
            deployed=None if row.deployment is None else not number(row.pending_since),
        ))
    return out
