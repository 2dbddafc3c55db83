"""The HTTP API's own table (migration 0009): the first answer to each Idempotency-Key."""

from __future__ import annotations

from sqlalchemy import Index, Table

from .columns import INT, c, metadata

api_idempotency = Table(
    "api_idempotency",
    metadata,
    c("id", pk=True),  # sha256 of the API key's id and the Idempotency-Key header, hex
    c("api_key_id", nn=True),
    c("request_hash", nn=True),  # sha256 of the job and its options: a key reused for another request
    c("status", INT, nn=True),
    c("response", nn=True),  # the JSON body answered first
    c("created_at", INT, nn=True),
    Index("ix_api_idempotency_created_at", "created_at"),
)
