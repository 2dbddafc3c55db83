"""What a test compares before and after: a database's schema and rows, what a query
trick could change, a file's permission bits."""

from __future__ import annotations

import stat
from pathlib import Path

import sqlalchemy as sa


def schema(engine: sa.Engine) -> dict[str, dict]:
    """{table: {"columns": {name: type}, "indexes": {name: (columns, unique)}}}."""
    inspector = sa.inspect(engine)
    found = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        found[table] = {
            "columns": {
                col["name"]: (str(col["type"]).upper(), col["nullable"])
                for col in inspector.get_columns(table)
            },
            "indexes": {
                ix["name"]: (tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            },
        }
    return found


def rows(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order, keyed by table name."""
    meta = sa.MetaData()
    meta.reflect(engine)
    dump = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            if table.name == "alembic_version":
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            dump[table.name] = [tuple(r._mapping.items()) for r in conn.execute(sa.select(table).order_by(*order))]
    return dump


def fingerprint(engine: sa.Engine) -> tuple:
    """What a query trick could change: the tables, the routes, and on PostgreSQL the
    position of the sequence `trick_seq`."""
    with engine.connect() as conn:
        tables = sorted(sa.inspect(conn).get_table_names())
        routes = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM routes ORDER BY id"))]
        seq = (
            conn.exec_driver_sql("SELECT last_value, is_called FROM trick_seq").one()
            if conn.dialect.name == "postgresql" else None
        )
    return tables, routes, tuple(seq) if seq else None


def file_mode(path: Path | str) -> int:
    """The permission bits of a file, e.g. 0o600."""
    return stat.S_IMODE(Path(path).stat().st_mode)
