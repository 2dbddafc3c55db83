"""Additive schema operations for migrations: create what is missing, never touch the rest.

Migrations describe columns in SCHEMA.md's own notation, one per line:

    name type [PK] [NN] [UQ] [=default] [->table.column]

with type one of `text`, `integer`, `real`. Every operation here is idempotent, so a
database that ProxyOS created itself (tables present, later columns missing, no migration
bookkeeping) is brought up to date without a row being changed.

This file is covered by the migration manifest: old migrations use it, so it never
changes. A new operation goes into a new module.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

log = logging.getLogger("proxyos.migrations")

# `integer` is SQLite's 64-bit INTEGER; on PostgreSQL that takes BIGINT (millisecond
# timestamps such as traffic_metrics.bucket_ts do not fit in a 32-bit integer).
_TYPES = {
    "text": sa.Text,
    "integer": lambda: sa.Integer().with_variant(sa.BigInteger(), "postgresql"),
    "real": sa.Float,
}


def parse_columns(spec: str) -> list[sa.Column]:
    columns = []
    for raw in spec.strip().splitlines():
        words = raw.split()
        if not words:
            continue
        name, type_name, *flags = words
        kwargs: dict = {"nullable": True}
        args: list = []
        for flag in flags:
            if flag == "PK":
                kwargs["primary_key"] = True
                kwargs["nullable"] = False
            elif flag == "NN":
                kwargs["nullable"] = False
            elif flag == "UQ":
                kwargs["unique"] = True
            elif flag.startswith("="):
                kwargs["server_default"] = sa.text(flag[1:])
            elif flag.startswith("->"):
                args.append(sa.ForeignKey(flag[2:], ondelete="CASCADE"))
            else:
                raise ValueError(f"unknown column flag {flag!r} in {raw!r}")
        columns.append(sa.Column(name, _TYPES[type_name](), *args, **kwargs))
    return columns


def _inspector() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def ensure_table(name: str, spec: str) -> None:
    """Create table `name`, or add the columns of `spec` that an existing one lacks."""
    columns = parse_columns(spec)
    inspector = _inspector()
    if not inspector.has_table(name):
        op.create_table(name, *columns)
        return
    present = {col["name"] for col in inspector.get_columns(name)}
    for column in columns:
        if column.name not in present:
            add_column(name, column)


def add_column(table: str, column: sa.Column) -> None:
    """Add one column to an existing table, within what ALTER TABLE ADD COLUMN allows."""
    unique = bool(column.unique)
    column.unique = None
    if not column.nullable and column.server_default is None:
        # Existing rows have no value for it: it can only be added as nullable.
        log.warning("migration: adding %s.%s as nullable (rows already exist)", table, column.name)
        column.nullable = True
    op.add_column(table, column)
    if unique:
        ensure_index(f"uq_{table}_{column.name}", table, [column.name], unique=True)


def ensure_index(name: str, table: str, columns: list[str], unique: bool = False) -> None:
    existing = {index["name"] for index in _inspector().get_indexes(table)}
    if name not in existing:
        op.create_index(name, table, columns, unique=unique)
