"""Test databases: a PostgreSQL schema of a test's own, a migrated engine, and the rows
the database-command tests look after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import migrations
from db.engine import create_engine, write_transaction
from db.migrate import upgrade

from .factories import add_route


@contextmanager
def postgres_schema(pg_url: str) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema of the server at `pg_url`,
    dropped at the end of the block."""
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@contextmanager
def migrated(url: str) -> Iterator[sa.Engine]:
    """An engine on `url`, migrated to the newest schema; disposed of at the end."""
    engine = create_engine(url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def add_watched_rows(engine: sa.Engine) -> None:
    """What the database commands must look after: two routes, and on PostgreSQL a
    sequence whose position a query trick might move (see snapshots.fingerprint)."""
    with write_transaction(engine) as conn:
        add_route(conn, "a.example", id="r1", upstreams="[]", created_at=1)
        add_route(conn, "b.example", id="r2", upstreams="[]", created_at=1)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("CREATE SEQUENCE trick_seq")


def scalar(engine: sa.Engine, sql: str, **params):
    """The one value `sql` (with `:name` parameters) selects, read in a connection of its own."""
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


MIGRATIONS_DIR = Path(migrations.__file__).parent


def upgrade_to(engine: sa.Engine, revision: str) -> None:
    """Apply the migrations up to `revision` only (what an older release left)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
