"""Rows as ProxyOS writes them, one function a kind: `add_route`, `add_stream`,
`add_provider`, `add_certificate`, `add_alert_rule`, `set_system_setting` (and
`add_plaintext_account_key`). Each returns the
new row's id; its keywords are the table's columns, any other column may be given too,
and a column not given keeps its default in the schema.

The first argument is an engine (the row is written in a transaction of its own) or a
connection already in a transaction (for many rows at once)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import (
    acme_account_keys,
    acme_accounts,
    alert_rules,
    certificates,
    dns_providers,
    routes,
    streams,
    system_settings,
)
from db.sql import new_id
from tasks.certs.credentials import encrypt

from .processes import free_port

SECRET = "test-proxyos-secret-" + secrets.token_hex(8)
"""PROXYOS_SECRET of the tests: what `add_provider` encrypts credentials with."""

UPSTREAMS = [{"address": "127.0.0.1:8080"}]


def unique(zone: str = "example.test") -> str:
    """A domain no other test uses, in `zone`."""
    return f"t{secrets.token_hex(4)}.{zone}"


def new_secret() -> str:
    """A PROXYOS_SECRET of a test's own."""
    return "test-secret-" + secrets.token_hex(16)


def ups(*addresses: str, **extra) -> list[dict]:
    """A route's upstreams: one {"address": ...} each, with `extra` keys in every one."""
    return [{"address": a, **extra} for a in addresses]


def _json(value: Any) -> Any:
    """Lists and objects as JSON text; anything else (text, bytes, None) as it is."""
    return json.dumps(value) if isinstance(value, list | dict) else value


@contextmanager
def _writing(target: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    if isinstance(target, sa.Connection):
        yield target
    else:
        with write_transaction(target) as conn:
            yield conn


def _insert(target: sa.Engine | sa.Connection, table: sa.Table, values: dict) -> None:
    with _writing(target) as conn:
        conn.execute(table.insert().values(**values))


def add_route(target, domain: str | None = None, tls_dns_provider_id: str | None = None, *,
              id: str | None = None, name: str | None = None, upstreams: Any = UPSTREAMS,
              aliases: Any = None, tls_mode: str | None = None, created_at: int | None = None,
              **columns) -> str:
    """A route; by default an `http` route to 127.0.0.1:8080 named after its id, on the
    domain `<id>.example.test`, created now. `upstreams` and `aliases` are JSON text or
    what to write as JSON. A route given a DNS provider is a `dns` route (TLS by DNS-01)
    unless `tls_mode` says otherwise; without one, `tls_mode` is the schema's default."""
    route_id = id or new_id()
    created = int(time.time()) if created_at is None else created_at
    if tls_mode is None and tls_dns_provider_id is not None:
        tls_mode = "dns"
    values = {
        "id": route_id,
        "name": name if name is not None else route_id,
        "domain": domain if domain is not None else f"{route_id.lower()}.example.test",
        "upstream_type": "http",
        "upstreams": _json(upstreams),
        "created_at": created,
        "updated_at": created,
        **({"tls_mode": tls_mode} if tls_mode is not None else {}),
        **({"tls_dns_provider_id": tls_dns_provider_id} if tls_dns_provider_id is not None else {}),
        **({"aliases": _json(aliases)} if aliases is not None else {}),
        **columns,
    }
    _insert(target, routes, values)
    return route_id


def add_stream(target, upstream_host: str = "127.0.0.1", upstream_port: int = 1, protocol: str = "tcp", *,
               id: str | None = None, listen_port: int | None = None, created_at: int | None = None,
               **columns) -> str:
    """A stream (a TCP or UDP proxy) to `upstream_host`:`upstream_port`, listening on a
    free port by default, created now."""
    stream_id = id or new_id()
    created = int(time.time()) if created_at is None else created_at
    _insert(target, streams, {
        "id": stream_id,
        "listen_port": free_port() if listen_port is None else listen_port,
        "protocol": protocol,
        "upstream_host": upstream_host,
        "upstream_port": upstream_port,
        "created_at": created,
        "updated_at": created,
        **columns,
    })
    return stream_id


def add_provider(target, credentials: dict | str, type_: str = "rfc2136", fmt: str = "v2", name: str = "bind", *,
                 secret: str = SECRET, id: str | None = None, **columns) -> str:
    """An enabled DNS provider. `credentials` (an object, or text as it is) are stored as
    `fmt` says: "v2" encrypted with `secret` as the dashboard does, "v1" in the earlier
    format, anything else ("plain", "raw") unencrypted."""
    text = credentials if isinstance(credentials, str) else json.dumps(credentials)
    if fmt == "v2":
        text = encrypt(text, secret)
    elif fmt == "v1":
        text = encrypt(text, secret, version="enc:v1:")
    provider_id = id or new_id()
    _insert(target, dns_providers, {
        "id": provider_id, "name": name, "type": type_, "credentials": text, "enabled": 1,
        "created_at": int(time.time()), **columns,
    })
    return provider_id


def add_certificate(target, domain: str, *, id: str | None = None, route_id: str | None = None,
                    source: str = "dns01", status: str = "provisioning", created_at: int | None = None,
                    **columns) -> str:
    """A certificate row, by default one the workers own (`dns01`) still to be issued,
    created now."""
    cert_id = id or new_id()
    created = int(time.time()) if created_at is None else created_at
    _insert(target, certificates, {
        "id": cert_id, "domain": domain, "source": source, "status": status, "auto_renew": 1, "failures": 0,
        "route_id": route_id, "created_at": created, "updated_at": created, **columns,
    })
    return cert_id


def add_plaintext_account_key(target, settings) -> str:
    """An ACME account key as earlier versions stored it without PROXYOS_SECRET: plain
    PEM in acme_account_keys, for the account of `settings`. Returns the PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tasks.certs.account import account_id_for

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    account_id = account_id_for(settings.directory, settings.email)
    now = int(time.time())
    with _writing(target) as conn:
        conn.execute(acme_accounts.insert().values(id=account_id, email=settings.email, provider="custom",
                                                   acme_url=settings.directory, created_at=now))
        conn.execute(acme_account_keys.insert().values(account_id=account_id, key_pem=pem, updated_at=now))
    return pem


def add_alert_rule(target, type_: str, config: Any = None, *, id: str | None = None, name: str | None = None,
                   target_route_id: str | None = None, enabled: int = 1, **columns) -> str:
    """A row of ProxyOS's `alert_rules` (`config`: JSON text or what to write as JSON)."""
    rule_id = id or new_id()
    _insert(target, alert_rules, {
        "id": rule_id, "name": name or f"{type_} {rule_id[:6]}", "type": type_, "target_route_id": target_route_id,
        "config": _json(config if config is not None else {}), "enabled": enabled, "created_at": int(time.time()),
        **columns,
    })
    return rule_id


def set_system_setting(target, key: str, value: Any) -> None:
    """ProxyOS's `system_settings[key]` (JSON text or what to write as JSON), replaced."""
    with _writing(target) as conn:
        conn.execute(sa.delete(system_settings).where(system_settings.c.key == key))
        conn.execute(system_settings.insert().values(key=key, value=_json(value), updated_at=int(time.time())))
