"""Small portable statement builders (SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

_ALPHABET = string.ascii_letters + string.digits + "_-"  # 64 symbols: 6 random bits each


def new_id(size: int = 21) -> str:
    """A random URL-safe id, the shape ProxyOS uses (nanoid-style, 21 characters)."""
    return "".join(_ALPHABET[byte & 63] for byte in secrets.token_bytes(size))


def driver_mark(conn: Connection | Engine) -> str:
    """The DBAPI driver's parameter mark, for statements sent with `exec_driver_sql`
    (SQLAlchemy's per-row parameter handling costs more than the rows on hot paths)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _insert(conn: Connection, table: Table):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def insert_or_ignore(conn: Connection, table: Table):
    """INSERT that does nothing for a row whose key already exists.

    To learn whether the row went in, add `.returning(column)` and test `.first()`:
    psycopg reports no rowcount (-1) for INSERT ... ON CONFLICT.
    """
    return _insert(conn, table).on_conflict_do_nothing()


def upsert(conn: Connection, table: Table, keys: Iterable[str], update: Iterable[str]):
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET each `update` column to the new value."""
    stmt = _insert(conn, table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={name: stmt.excluded[name] for name in update}
    )
