"""`Idempotency-Key`: the first answer to a key (per API key) is stored in the database
(`api_idempotency`), in the transaction that enqueues the request, and given again to
every request with that key for 24 hours, which then enqueues nothing: across restarts and
any number of API processes. A key sent again with another job or other options is
refused (422), as the IETF draft on the header advises."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import api_idempotency
from db.sql import insert_or_ignore

KEEP_S = 24 * 3600
MAX_LENGTH = 255


@dataclass(frozen=True)
class Stored:
    status: int
    body: dict[str, Any]
    same_request: bool


def check_header(value: str) -> str | None:
    """Why the header's value is not usable, or None."""
    if not value or len(value) > MAX_LENGTH or not value.isascii() or not value.isprintable():
        return f"Idempotency-Key must be 1 to {MAX_LENGTH} printable ASCII characters"
    return None


def record_id(api_key_id: str, header: str) -> str:
    return hashlib.sha256(f"{api_key_id}\0{header}".encode()).hexdigest()


def request_hash(job: str, options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([job, options], sort_keys=True).encode()).hexdigest()


def claim(conn: Connection, record: str, api_key_id: str, fingerprint: str, status: int,
          body: dict[str, Any], now: int) -> Stored | None:
    """In the caller's write transaction: store (`status`, `body`) as the first answer to
    `record` and return None; or return the answer stored in the last 24 hours."""
    values = dict(api_key_id=api_key_id, request_hash=fingerprint, status=status,
                  response=json.dumps(body, sort_keys=True), created_at=now)
    inserted = conn.execute(
        insert_or_ignore(conn, api_idempotency).values(id=record, **values).returning(api_idempotency.c.id)
    ).first()
    if inserted:
        return None
    row = conn.execute(sa.select(api_idempotency).where(api_idempotency.c.id == record)).one()
    if row.created_at <= now - KEEP_S:  # an old one: this request is a new first
        conn.execute(sa.update(api_idempotency).where(api_idempotency.c.id == record).values(**values))
        return None
    return Stored(status=row.status, body=json.loads(row.response), same_request=row.request_hash == fingerprint)


def prune(conn: Connection, now: int) -> int:
    """Forget answers older than 24 hours; how many."""
    return conn.execute(sa.delete(api_idempotency).where(api_idempotency.c.created_at <= now - KEEP_S)).rowcount
