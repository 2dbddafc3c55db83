"""What `proxyos-worker certs` and `status` show about certificates. Rows the workers
do not own are listed as they are, with who manages them, and never written."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.schema import cert_deployments, certificates, routes

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
        deployed = {r.certificate_id: r for r in conn.execute(sa.select(cert_deployments))}
    cert_of_route = {row.route_id: row.id for row in found if is_owned(row.source, row.tls_mode)}
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
            "caddy": _deployment(deployed.get(cert_of_route.get(lead.route_id) if lead else row.id), now)
            if owned else None,
        })
    return out


def _deployment(record, now: float) -> dict | None:
    """What Caddy was last given for this certificate, and what is still to come."""
    if record is None:
        return None
    since = number(record.pending_since)
    return {
        "serial": record.serial,
        "fingerprint": record.fingerprint,
        "deployed_at": record.deployed_at,
        "pending_since": since,
        "pending_for_s": int(now - since) if since else None,
        "failures": record.failures,
        "last_error": record.last_error,
        "next_attempt_at": record.next_attempt_at,
    }


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
        "caddy": _caddy_summary(items),
        "errors": {
            i["domain"]: i["last_error"]
            for i in items
            if i["status"] in ("error", "expired") and i["last_error"]
        },
    }


def _caddy_summary(items: list[dict]) -> dict:
    """Certificates loaded into Caddy, and those whose current one is not there yet
    (with for how long and why): the delay `status` shows while Caddy is down."""
    records = {i["domain"]: i["caddy"] for i in items if i.get("caddy")}
    waiting = {
        domain: f"not loaded for {int(r['pending_for_s'])} s ({r['failures']} attempts, next "
                f"{_clock(r['next_attempt_at'])}): {r['last_error']}"
        for domain, r in records.items() if r["pending_since"]
    }
    return {"loaded": sum(1 for r in records.values() if r["deployed_at"] and not r["pending_since"]),
            "waiting": waiting}


def _clock(ts) -> str:
    import time

    return time.strftime("%H:%M:%S UTC", time.gmtime(number(ts))) if number(ts) else "-"
