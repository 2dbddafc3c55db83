"""Helpers shared by the certificate tests (rows for routes and DNS providers)."""

from __future__ import annotations

import json
import secrets
import time

from db.engine import write_transaction
from db.schema import dns_providers, routes
from db.sql import new_id
from tasks.certs.credentials import encrypt

SECRET = "test-proxyos-secret-" + secrets.token_hex(8)


def unique(zone: str = "example.test") -> str:
    return f"t{secrets.token_hex(4)}.{zone}"


def add_provider(engine, credentials: dict | str, type_: str = "rfc2136", fmt: str = "v2",
                 name: str = "bind") -> str:
    text = credentials if isinstance(credentials, str) else json.dumps(credentials)
    if fmt == "v2":
        text = encrypt(text, SECRET)
    elif fmt == "v1":
        text = encrypt(text, SECRET, version="enc:v1:")
    provider_id = new_id()
    with write_transaction(engine) as conn:
        conn.execute(dns_providers.insert().values(
            id=provider_id, name=name, type=type_, credentials=text, enabled=1, created_at=int(time.time())))
    return provider_id


def add_route(engine, domain: str, provider_id: str | None, aliases: list[str] | None = None,
              tls_mode: str = "dns") -> str:
    route_id = new_id()
    now = int(time.time())
    with write_transaction(engine) as conn:
        conn.execute(routes.insert().values(
            id=route_id, name=domain, domain=domain, upstream_type="http",
            upstreams=json.dumps([{"address": "127.0.0.1:8080"}]), tls_mode=tls_mode,
            tls_dns_provider_id=provider_id, aliases=json.dumps(aliases) if aliases else None,
            created_at=now, updated_at=now))
    return route_id


def pebble_counts(pebble) -> dict[str, int]:
    """Orders Pebble created and certificates it issued so far, from its own log."""
    text = (pebble.ca_bundle.parent / "pebble.log").read_text()
    return {"orders": text.count("Added order"), "issued": text.count("Issued certificate serial")}


def store_plaintext_account_key(engine, settings) -> str:
    """An ACME account key as earlier versions stored it without PROXYOS_SECRET: plain
    PEM in acme_account_keys. Returns the PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from db.schema import acme_account_keys, acme_accounts
    from tasks.certs.account import account_id_for

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    account_id = account_id_for(settings.directory, settings.email)
    now = int(time.time())
    with write_transaction(engine) as conn:
        conn.execute(acme_accounts.insert().values(id=account_id, email=settings.email, provider="custom",
                                                   acme_url=settings.directory, created_at=now))
        conn.execute(acme_account_keys.insert().values(account_id=account_id, key_pem=pem, updated_at=now))
    return pem
