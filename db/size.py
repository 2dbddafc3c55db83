"""The database's size on disk, for `GET /metrics`: the SQLite file and its WAL (one
stat each), or PostgreSQL's `pg_database_size`."""

from __future__ import annotations

import os

from sqlalchemy.engine import Connection

from .engine import sqlite_path


def sizes(conn: Connection) -> dict[str, int]:
    """{"main": bytes, "wal": bytes} on SQLite (a missing WAL is 0), {"main": bytes}
    on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return {"main": int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())}
    path = sqlite_path(conn.engine)
    found = {}
    for part, name in (("main", str(path)), ("wal", f"{path}-wal")):
        try:
            found[part] = os.stat(name).st_size
        except FileNotFoundError:
            found[part] = 0
    return found
