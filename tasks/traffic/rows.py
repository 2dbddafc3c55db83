"""Writing `access_log` rows fast: one multi-row INSERT per batch, ids that sort by
sequence number (so the primary-key index is appended to, not split at random)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy.engine import Connection

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
    head = []
    for _ in range(SEQ_CHARS):
        head.append(SORTED_ALPHABET[seq & 63])
        seq >>= 6
    return "".join(reversed(head)) + secrets.token_urlsafe(10)[:13].translate(_TRANSLATE)


def insert_sql(conn: Connection) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return (
        f"INSERT INTO access_log ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(COLUMNS))})"
    )


def insert_rows(conn: Connection, first_seq: int, rows: Sequence[tuple]) -> None:
    """Insert `rows`, each (route_id, method, path, status_code, latency_ms, bytes_out,
    client_ip, user_agent, recorded_at, latency_bin), numbered from `first_seq`."""
    params = []
    for offset, row in enumerate(rows):
        seq = first_seq + offset
        params.append((row_id(seq), *row[:9], seq, row[9]))
    if params:
        conn.exec_driver_sql(insert_sql(conn), params)
