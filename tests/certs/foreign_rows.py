"""Watching the certificate rows the workers must not change: a snapshot of their values,
and (SQLite) triggers that record every UPDATE or DELETE of one, even to equal values."""

from __future__ import annotations

import datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .dashboard import CA_DIRS

NOT_OWNED = ("NOT COALESCE(source = 'dns01' AND route_id IN "
             "(SELECT id FROM routes WHERE tls_mode = 'dns'), FALSE)")


def snapshot(engine: sa.Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r.id: tuple(r) for r in conn.execute(
            sa.text(f"SELECT * FROM certificates WHERE {NOT_OWNED} ORDER BY id"))}


def install_triggers(engine: sa.Engine) -> None:
    """SQLite: log each UPDATE/DELETE of a row that was not the workers' before it."""
    old = NOT_OWNED.replace("source", "OLD.source").replace("route_id IN", "OLD.route_id IN")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE foreign_writes (op TEXT, cert_id TEXT, domain TEXT)")
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER foreign_{op.lower()} AFTER {op} ON certificates WHEN {old} "
                f"BEGIN INSERT INTO foreign_writes VALUES ('{op}', OLD.id, OLD.domain); END")


def foreign_writes(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM foreign_writes")]


def clear_foreign_writes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM foreign_writes")


def caddy_certificate(caddy_root: Path, domain: str, not_before: int, not_after: int) -> None:
    """A certificate file where Caddy keeps what it obtained, as the dashboard looks for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain.lower())])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(not_before, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(not_after, datetime.UTC))
        .sign(key, hashes.SHA256())
    )
    path = caddy_root / CA_DIRS[0] / domain / f"{domain}.crt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
