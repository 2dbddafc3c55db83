"""Writing `access_log` rows fast: one multi-row INSERT per batch, ids that sort by
sequence number (so the primary-key index is appended to, not split at random)."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from db.sql import driver_mark

# 64 URL-safe characters in ASCII order: ids that sort like the numbers they encode.
SORTED_ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_TRANSLATE = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", SORTED_ALPHABET
)
SEQ_CHARS = 8  # 48 bits of sequence number

COLUMNS = (
    "id", "route_id", "method", "path", "status_code", "latency_ms", "bytes_out",
    "client_ip", "user_agent", "recorded_at", "seq", "latency_bin",
)


def row_id(seq: int) -> str:
    """A 21-character URL-safe id, as ProxyOS's: 8 characters of `seq` then 13 random."""
    return row_ids(seq, 1)[0]


def row_ids(first_seq: int, count: int) -> list[str]:
    """`row_id` for `count` consecutive numbers from `first_seq`, in one go."""
    heads = base64.urlsafe_b64encode(
        b"".join(s.to_bytes(6, "big") for s in range(first_seq, first_seq + count))
    ).decode().translate(_TRANSLATE)
    tails = base64.urlsafe_b64encode(os.urandom(12 * count)).decode().translate(_TRANSLATE)
    return [heads[8 * i : 8 * i + 8] + tails[16 * i : 16 * i + 13] for i in range(count)]


def insert_sql(conn: Connection) -> str:
    mark = driver_mark(conn)
    return (
        f"INSERT INTO access_log ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(COLUMNS))})"
    )


def insert_rows(conn: Connection, first_seq: int, rows: Sequence[tuple]) -> None:
    """Insert `rows`, each (route_id, method, path, status_code, latency_ms, bytes_out,
    client_ip, user_agent, recorded_at, latency_bin), numbered from `first_seq`."""
    ids = row_ids(first_seq, len(rows))
    params = [
        (ids[i], *row[:9], first_seq + i, row[9]) for i, row in enumerate(rows)
    ]
    if params:
        conn.exec_driver_sql(insert_sql(conn), params)
