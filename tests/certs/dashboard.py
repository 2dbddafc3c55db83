"""The dashboard's own certificate code, transcribed as SQL in Python: `syncFromRoutes`
and the `list` query of packages/api/src/routers/certificates.ts (proxyos-app).

Kept line by line with the TypeScript so a test can run the dashboard's behaviour
against a database the workers filled. `caddyHasCert` reads Caddy's storage under
`caddy_root` (the dashboard's is /data/caddy/caddy/certificates)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509

CA_DIRS = (
    "acme-v02.api.letsencrypt.org-directory",
    "acme-staging-v02.api.letsencrypt.org-directory",
    "zerossl",
)
COLUMNS = ("id", "domain", "source", "status", "issued_at", "expires_at", "auto_renew",
           "last_renewed_at", "route_id", "created_at", "updated_at")


@dataclass
class SyncLog:
    inserted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def nanoid() -> str:
    alphabet = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"
    return "".join(secrets.choice(alphabet) for _ in range(21))


def source_from_tls_mode(tls_mode: str) -> str:
    return {"dns": "dns01", "internal": "internal", "custom": "custom"}.get(tls_mode, "acme_le")


def caddy_has_cert(caddy_root: Path, domain: str) -> dict:
    for ca in CA_DIRS:
        path = caddy_root / ca / domain / f"{domain}.crt"
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue  # not found in this CA dir, try next
        return {
            "active": True,
            "issued_at": int(cert.not_valid_before_utc.astimezone(UTC).timestamp()),
            "expires_at": int(cert.not_valid_after_utc.astimezone(UTC).timestamp()),
        }
    return {"active": False}


def sync_from_routes(engine: sa.Engine, now: int, caddy_root: Path) -> SyncLog:
    """`syncFromRoutes(db)`: statement by statement, as drizzle issues them."""
    done = SyncLog()
    with engine.begin() as conn:
        route_rows = conn.execute(sa.text("SELECT id, domain, tls_mode FROM routes")).all()
        existing = conn.execute(sa.text(f"SELECT {', '.join(COLUMNS)} FROM certificates")).all()
        by_domain = {c.domain: c for c in existing}  # new Map(...): the last row wins
        for r in route_rows:
            if r.tls_mode == "off":
                continue
            prior = by_domain.get(r.domain)
            source = source_from_tls_mode(r.tls_mode)
            info = caddy_has_cert(caddy_root, r.domain)
            if prior is None:
                conn.execute(
                    sa.text(
                        "INSERT INTO certificates (id, domain, source, status, issued_at, expires_at,"
                        " auto_renew, route_id, created_at, updated_at) VALUES (:id, :domain, :source,"
                        " :status, :issued_at, :expires_at, 1, :route_id, :now, :now)"
                    ),
                    {"id": nanoid(), "domain": r.domain, "source": source,
                     "status": "active" if info["active"] else "provisioning",
                     "issued_at": info.get("issued_at"), "expires_at": info.get("expires_at"),
                     "route_id": r.id, "now": now},
                )
                done.inserted.append(r.domain)
            else:
                updates: dict = {"updated_at": now}
                if prior.route_id != r.id:
                    updates["route_id"] = r.id
                if prior.source != source:
                    updates["source"] = source
                if info["active"]:
                    if prior.status == "provisioning":
                        updates["status"] = "active"
                    if info.get("issued_at") and not prior.issued_at:
                        updates["issued_at"] = info["issued_at"]
                    if info.get("expires_at") and not prior.expires_at:
                        updates["expires_at"] = info["expires_at"]
                sets = ", ".join(f"{k} = :{k}" for k in updates)
                conn.execute(sa.text(f"UPDATE certificates SET {sets} WHERE id = :pid"),
                             {**updates, "pid": prior.id})
        domain_set = {r.domain for r in route_rows if r.tls_mode != "off"}
        for c in existing:
            if c.domain not in domain_set and c.source != "custom":
                gone = conn.execute(
                    sa.text("DELETE FROM certificates WHERE id = :id AND last_renewed_at IS NULL"),
                    {"id": c.id},
                ).rowcount
                if gone:
                    done.deleted.append(c.domain)
    return done


def list_certificates(engine: sa.Engine, now: int, caddy_root: Path) -> tuple[list[dict], SyncLog]:
    """`certificates.list`: sync, select every row, sort by domain (localeCompare, which
    orders letters case-insensitively first)."""
    done = sync_from_routes(engine, now, caddy_root)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            sa.text(f"SELECT {', '.join(COLUMNS)} FROM certificates"))]
    return sorted(rows, key=lambda r: (r["domain"].casefold(), r["domain"])), done


def upload_custom(engine: sa.Engine, domain: str, issued_at: int | None, expires_at: int | None,
                  now: int) -> str:
    """`certificates.upload` for a domain without a row: a `custom` row, no route."""
    cert_id = nanoid()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO certificates (id, domain, source, status, issued_at, expires_at,"
                " auto_renew, route_id, created_at, updated_at) VALUES (:id, :domain, 'custom',"
                " 'active', :issued_at, :expires_at, 0, NULL, :now, :now)"
            ),
            {"id": cert_id, "domain": domain, "issued_at": issued_at, "expires_at": expires_at,
             "now": now},
        )
    return cert_id
