"""What `GET /metrics` reads of certificates: one query over `certificates` (with their
route's TLS mode and their `cert_deployments` row), one row per certificate. The next
renewal follows `listing.rows` (what `proxyos-worker certs` shows) without its grouping
of shared certificates: a retry time while one is failing or in flight, else the
renewal time, for the certificates the workers renew."""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import cert_deployments, certificates, routes

from .isolation import number
from .ownership import is_owned
from .policy import renewal_time

RETRYING = ("error", "expired", "provisioning", "renewing")


class CertificateGauges(NamedTuple):  # a tuple: a scrape builds one per certificate
    id: str
    domain: str
    expires_at: float | None
    next_renewal_at: float | None  # None: the workers do not renew it
    failures: int
    deployed: bool | None  # None: the workers never loaded it into Caddy; False: waiting


class _Dates(NamedTuple):  # what `renewal_time` reads of a row
    renew_at: object
    issued_at: object
    expires_at: object


def read(conn: Connection, now: float) -> list[CertificateGauges]:
    c, d = certificates, cert_deployments
    found = conn.execute(
        sa.select(c.c.id, c.c.domain, c.c.source, c.c.status, c.c.issued_at, c.c.expires_at, c.c.renew_at,
                  c.c.auto_renew, c.c.failures, c.c.next_attempt_at, routes.c.tls_mode, routes.c.enabled,
                  d.c.certificate_id, d.c.pending_since)
        .outerjoin(routes, routes.c.id == c.c.route_id)
        .outerjoin(d, d.c.certificate_id == c.c.id)
        .order_by(c.c.id)
    ).all()
    out = []
    # Unpacked by position: a Row's attribute costs about 1 us, and this runs for every
    # certificate on every scrape.
    for (cert_id, domain, source, status, issued_at, expires_at, renew_at, auto_renew, failures, next_attempt_at,
         tls_mode, route_enabled, deployment, pending_since) in found:
        if not (is_owned(source, tls_mode) and route_enabled and auto_renew):
            next_at = None
        elif status in RETRYING and number(next_attempt_at):
            next_at = number(next_attempt_at)
        elif status == "provisioning":
            next_at = now
        else:
            next_at = renewal_time(_Dates(renew_at, issued_at, expires_at))
        out.append(CertificateGauges(
            cert_id, domain, number(expires_at), next_at, int(number(failures) or 0),
            None if deployment is None else not number(pending_since),
        ))
    return out
