"""The ACME order in flight for a certificate (`cert_orders`): saved right after the CA
created it, before anything can make the CA issue, so that the next attempt after a
crash continues that order (or downloads its certificate) instead of ordering again.

The order's new private key is encrypted with PROXYOS_SECRET (`enc:v2:`); without a
secret it goes to a mode-0600 file under `<cert dir>/.orders/` and the row names the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.schema import cert_orders

from .credentials import decrypt, encrypt
from .errors import CertError
from .files import write_atomic

log = logging.getLogger("proxyos.certs.saved_order")


@dataclass(frozen=True)
class SavedOrder:
    url: str
    names: list[str]
    key: PrivateKeyTypes = field(repr=False)


class OrderStore:
    """The saved order of one certificate under one ACME account (the order journal of
    `OrderFlow`). Used only while the certificate's lease is held."""

    def __init__(
        self,
        engine: Engine,
        cert_id: str,
        account_id: str,
        secret: str | None,
        cert_dir: Path,
        clock: Callable[[], float],
    ) -> None:
        self.engine, self.cert_id, self.account_id = engine, cert_id, account_id
        self.secret, self.clock = secret, clock
        self.key_path = cert_dir / ".orders" / f"{cert_id}.key"

    def load(self) -> SavedOrder | None:
        """The saved order, or None; one that cannot be used (another ACME account, a key
        that cannot be read) is discarded."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(cert_orders).where(cert_orders.c.certificate_id == self.cert_id)
            ).first()
        if row is None:
            return None
        if row.account_id != self.account_id:
            return self._unusable("it belongs to another ACME account or directory")
        try:
            key = serialization.load_pem_private_key(self._read_key(row), password=None)
        except (CertError, OSError, ValueError, TypeError) as exc:
            return self._unusable(f"its private key cannot be read: {_reason(exc)}")
        return SavedOrder(row.order_url, json.loads(row.names), key)

    def ordered(self, url: str, names: list[str], key_pem: bytes) -> None:
        """Save the order, durably, before the caller goes on."""
        if self.secret:
            stored, key_file = encrypt(key_pem.decode(), self.secret), None
        else:
            write_atomic(self.key_path, key_pem, mode=0o600)
            stored, key_file = None, str(self.key_path)
        values = dict(
            account_id=self.account_id,
            order_url=url,
            names=json.dumps(names),
            key_pem=stored,
            key_file=key_file,
            created_at=int(self.clock()),
        )
        with write_transaction(self.engine) as conn:
            conn.execute(sa.delete(cert_orders).where(cert_orders.c.certificate_id == self.cert_id))
            conn.execute(cert_orders.insert().values(certificate_id=self.cert_id, **values))

    def forget_in(self, conn: Connection) -> None:
        """Delete the row within the caller's transaction; `drop_key_file` after it commits."""
        conn.execute(sa.delete(cert_orders).where(cert_orders.c.certificate_id == self.cert_id))

    def drop_key_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.key_path.unlink()

    def discarded(self) -> None:
        with write_transaction(self.engine) as conn:
            self.forget_in(conn)
        self.drop_key_file()

    def _read_key(self, row) -> bytes:
        if row.key_pem:
            return decrypt(row.key_pem, self.secret, "the private key of a saved ACME order").encode()
        if row.key_file:
            return Path(row.key_file).read_bytes()
        raise ValueError("none was saved")

    def _unusable(self, reason: str) -> None:
        log.warning("certificate %s: discarding the saved ACME order: %s", self.cert_id, reason)
        self.discarded()
        return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)
