"""API keys, checked exactly as ProxyOS checks them (packages/api/src/apiKeyAuth.ts).

`Authorization: Bearer pxos_...`: the key's HMAC-SHA256 with PROXYOS_SECRET (hex) is
looked up in `api_keys.key_hash`; failing that the legacy plain SHA-256 (hex), whose row is
then upgraded to the HMAC in place, as ProxyOS does. A key whose `expires_at` has come
(`expires_at <= now`) is refused. `last_used` is written as ProxyOS writes it (seconds),
but at most once a minute per key: a write per request would cost the shared database
more than the request itself.

`KeyStore.resolve` blocks (it reads the database): call it from a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.schema import api_keys
from db.sql import driver_mark

PREFIX = "pxos_"
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[str]


def hmac_hash(secret: str, key: str) -> str:
    """ProxyOS's `hashApiKey`: createHmac('sha256', secret).update(key).digest('hex')."""
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def sha256_hash(key: str) -> str:
    """ProxyOS's legacy hash: createHash('sha256').update(key).digest('hex')."""
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The key in `Authorization: Bearer pxos_...`, or None (ProxyOS looks at nothing else)."""
    if not header or not header.startswith("Bearer " + PREFIX):
        return None
    return header[len("Bearer "):]


def _scopes(raw: str | None) -> frozenset[str]:
    """The JSON list of scopes; a value that is not one grants nothing."""
    try:
        value = json.loads(raw or "")
    except (ValueError, RecursionError):
        return frozenset()
    return frozenset(s for s in value if isinstance(s, str)) if isinstance(value, list) else frozenset()


class KeyStore:
    def __init__(self, engine: Engine, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._secret = secret
        self._clock = clock
        self._touched: dict[str, float] = {}  # key id -> when this process last wrote last_used
        self._lock = threading.Lock()

    def resolve(self, key: str, conn: Connection | None = None) -> ApiKey | None:
        """The key's row, if `key` is a valid, unexpired ProxyOS API key; read on `conn`
        when given (its transaction is ended before this returns)."""
        if not key.startswith(PREFIX):
            return None
        hashed, legacy = hmac_hash(self._secret, key), sha256_hash(key)
        with nullcontext(conn) if conn is not None else self._engine.connect() as conn:
            mark = driver_mark(conn)  # the driver's own parameters: this runs on every request
            rows = conn.exec_driver_sql(
                "SELECT id, name, key_hash, scopes, last_used, expires_at FROM api_keys "
                f"WHERE key_hash IN ({mark}, {mark})", (hashed, legacy)).all()
            conn.rollback()  # a read: end it, the connection may go on to write
        row = next((r for r in rows if r.key_hash == hashed), None) or next(iter(rows), None)
        if row is None:
            return None
        now = self._clock()
        if row.expires_at is not None and row.expires_at <= now:
            return None
        if row.key_hash != hashed:
            self._upgrade(row.id, legacy, hashed, int(now))
        elif self._due(row.id, row.last_used, now):
            self._touch(row.id, int(now))
        return ApiKey(id=row.id, name=row.name, scopes=_scopes(row.scopes))

    def _due(self, key_id: str, last_used: int | None, now: float) -> bool:
        """Whether to write last_used now: not within the last minute, by the row or by us."""
        if last_used is not None and now - last_used < TOUCH_EVERY_S:
            return False
        with self._lock:
            if now - self._touched.get(key_id, float("-inf")) < TOUCH_EVERY_S:
                return False
            self._touched[key_id] = now
            return True

    def _touch(self, key_id: str, now: int) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(last_used=now))

    def _upgrade(self, key_id: str, legacy: str, hashed: str, now: int) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.update(api_keys).where(api_keys.c.id == key_id, api_keys.c.key_hash == legacy)
                .values(key_hash=hashed, last_used=now)
            )
        with self._lock:
            self._touched[key_id] = now
