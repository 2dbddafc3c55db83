"""Helpers for the database-command tests: rows to look after, and what tricks could change."""

from __future__ import annotations

import sqlalchemy as sa

from db.engine import write_transaction

ROUTE = (
    "INSERT INTO routes (id, name, domain, upstream_type, upstreams, created_at, updated_at)"
    " VALUES (:id, :id, :domain, 'http', '[]', 1, 1)"
)


def fill(engine: sa.Engine) -> None:
    """Two routes, and on PostgreSQL a sequence whose value a trick might move."""
    with write_transaction(engine) as conn:
        conn.execute(sa.text(ROUTE), [{"id": "r1", "domain": "a.example"}, {"id": "r2", "domain": "b.example"}])
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("CREATE SEQUENCE trick_seq")


def fingerprint(engine: sa.Engine) -> tuple:
    """What a trick could change: the tables, the routes, the sequence's position."""
    with engine.connect() as conn:
        tables = sorted(sa.inspect(conn).get_table_names())
        routes = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM routes ORDER BY id"))]
        seq = (
            conn.exec_driver_sql("SELECT last_value, is_called FROM trick_seq").one()
            if conn.dialect.name == "postgresql" else None
        )
    return tables, routes, tuple(seq) if seq else None


def mode(path) -> int:
    return path.stat().st_mode & 0o777
