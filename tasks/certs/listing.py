"""What `proxyos-worker certs` and `status` show about certificates."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import certificates, routes

from . import policy
from .policy import due_reason


def rows(engine: Engine, now: float) -> list[dict]:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(certificates, routes.c.tls_mode, routes.c.enabled.label("route_enabled"))
            .outerjoin(routes, routes.c.id == certificates.c.route_id)
            .order_by(certificates.c.domain)
        ).all()
    out = []
    for row in found:
        wanted = row.source != "dns01" or (row.tls_mode == "dns" and row.route_enabled)
        renew_at = row.renew_at
        if renew_at is None and row.issued_at and row.expires_at:
            renew_at = policy.renew_at(row.issued_at, row.expires_at)
        if row.status in ("error", "expired", "provisioning", "renewing") and row.next_attempt_at:
            next_at = row.next_attempt_at
        elif row.status == "provisioning":
            next_at = now
        else:
            next_at = renew_at
        out.append({
            "id": row.id,
            "domain": row.domain,
            "source": row.source,
            "status": row.status,
            "expires_at": row.expires_at,
            "next_renewal_at": next_at if (wanted and row.auto_renew) else None,
            "last_error": row.last_error,
            "failures": row.failures,
            "leased_by": row.lease_owner if (row.lease_expires_at or 0) > now else None,
            "renewing": bool(wanted and row.auto_renew),
            "due": bool(wanted and due_reason(row, now)),
        })
    return out


def summary(engine: Engine, now: float) -> dict:
    items = rows(engine, now)
    by_status: dict[str, int] = {}
    for item in items:
        by_status[item["status"]] = by_status.get(item["status"], 0) + 1
    soon = [i for i in items if i["expires_at"] and i["expires_at"] - now < 14 * 86400 and i["status"] != "none"]
    return {
        "certificates": len(items),
        "by_status": by_status,
        "due_now": sum(1 for i in items if i["due"]),
        "expiring_within_14_days": [i["domain"] for i in soon],
        "errors": {
            i["domain"]: i["last_error"]
            for i in items
            if i["status"] in ("error", "expired") and i["last_error"]
        },
    }
