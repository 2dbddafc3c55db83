"""What `proxyos-worker certs` and `status` show about certificates. Rows the workers
do not own are listed as they are, with who manages them, and never written."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import certificates, routes

from .isolation import number
from .ownership import is_owned, managed_by
from .policy import due_reason, renewal_time
from .sync import plan


def rows(engine: Engine, now: float) -> list[dict]:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(certificates, routes.c.tls_mode, routes.c.enabled.label("route_enabled"))
            .outerjoin(routes, routes.c.id == certificates.c.route_id)
            .order_by(certificates.c.domain, certificates.c.id)
        ).all()
        groups, _ = plan(conn)
    lead_of = {route.route_id: group.lead for group in groups for route in group.routes}
    out = []
    for row in found:
        owned = is_owned(row.source, row.tls_mode)
        lead = lead_of.get(row.route_id) if owned else None
        shared = lead is not None and lead.route_id != row.route_id
        renewing = bool(owned and row.route_enabled and row.auto_renew and lead is not None)
        if row.status in ("error", "expired", "provisioning", "renewing") and number(row.next_attempt_at):
            next_at = number(row.next_attempt_at)
        elif row.status == "provisioning":
            next_at = now
        else:
            next_at = renewal_time(row)
        out.append({
            "id": row.id,
            "domain": row.domain,
            "source": row.source,
            "status": row.status,
            "managed_by": managed_by(row.source, row.tls_mode),
            "shares_certificate_of": lead.domain if shared else None,
            "expires_at": row.expires_at,
            "next_renewal_at": next_at if renewing else None,
            "last_error": row.last_error if owned else None,
            "failures": row.failures,
            "leased_by": row.lease_owner if (number(row.lease_expires_at) or 0) > now else None,
            "renewing": renewing,
            "due": bool(renewing and not shared and due_reason(row, now)),
        })
    return out


def summary(engine: Engine, now: float) -> dict:
    items = rows(engine, now)
    by_status: dict[str, int] = {}
    for item in items:
        by_status[item["status"]] = by_status.get(item["status"], 0) + 1
    soon = [i for i in items
            if number(i["expires_at"]) and number(i["expires_at"]) - now < 14 * 86400 and i["status"] != "none"]
    return {
        "certificates": len(items),
        "by_status": by_status,
        "managed_by_workers": sum(1 for i in items if i["managed_by"] == "workers"),
        "due_now": sum(1 for i in items if i["due"]),
        "expiring_within_14_days": [i["domain"] for i in soon],
        "errors": {
            i["domain"]: i["last_error"]
            for i in items
            if i["status"] in ("error", "expired") and i["last_error"]
        },
    }
