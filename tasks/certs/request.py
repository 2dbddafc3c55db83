"""Finding the certificate a person asked for (`issue --cert ID` / `--domain NAME`): the
row that is ordered for it (its group's lead), after bringing that group in step."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.problem import Problem
from db.schema import certificates, routes

from .errors import ConfigurationError
from .names import acme_name, acme_name_or_none
from .ownership import is_owned, not_ours
from .sync import SyncedGroup, sync_certificates


class NotFound(Problem, ValueError):
    pass


def resolve(
    engine: Engine, now: int, cert_id: str | None = None, domain: str | None = None
) -> tuple[str, SyncedGroup | None]:
    """The id to order and its group (None when its route no longer wants DNS-01).
    NotFound when nothing matches; ConfigurationError for a row the workers do not own."""
    synced = sync_certificates(engine, now)
    row = _find(engine, cert_id, domain)
    if row is None:
        what = f"id {cert_id}" if cert_id else f"domain {domain}"
        raise NotFound(f"no certificate with {what} (is there an enabled route with tls_mode dns?)")
    if not is_owned(row.source, row.tls_mode):
        raise ConfigurationError(not_ours(row.domain, row.source, row.tls_mode))
    group = synced.group_of(row.id)
    return (group.lead_id if group else row.id), group


def _find(engine: Engine, cert_id: str | None, domain: str | None):
    query = (
        sa.select(certificates.c.id, certificates.c.domain, certificates.c.source, routes.c.tls_mode)
        .outerjoin(routes, routes.c.id == certificates.c.route_id)
        .order_by(certificates.c.created_at, certificates.c.id)
    )
    with engine.connect() as conn:
        if cert_id:
            return conn.execute(query.where(certificates.c.id == cert_id)).first()
        exact = conn.execute(query.where(certificates.c.domain == domain)).all()
        if exact:
            return _prefer_owned(exact)
        try:
            wanted = acme_name(domain or "")
        except ValueError:
            return None
        same = [r for r in conn.execute(query) if acme_name_or_none(r.domain) == wanted]
    return _prefer_owned(same) if same else None


def _prefer_owned(rows):
    return next((r for r in rows if is_owned(r.source, r.tls_mode)), rows[0])


