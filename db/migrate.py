"""Apply the Alembic migrations: all pending ones in one transaction, or none at all."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

import migrations

from .engine import describe_url, is_sqlite
from .errors import DatabaseProblem, explain

log = logging.getLogger("proxyos.migrations")

# Any constant will do: it only has to be the same for every process that migrates.
_PG_MIGRATION_LOCK = 0x70726F78


class MigrationFailed(DatabaseProblem):
    """A migration raised; the transaction was rolled back and nothing changed."""


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str
    applied: list[str]
    pending: list[str]


def _config(script_location: str | Path | None = None) -> Config:
    config = Config()
    location = script_location or Path(migrations.__file__).parent
    config.set_main_option("script_location", str(location))
    return config


def status(engine: Engine | None, script_location: str | Path | None = None) -> MigrationStatus:
    """Applied and pending revisions; `engine` None stands for a database not created yet."""
    script = ScriptDirectory.from_config(_config(script_location))
    current = None
    if engine is not None:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    order = [rev.revision for rev in script.walk_revisions("base", "heads")][::-1]
    done = order[: order.index(current) + 1] if current in order else []
    return MigrationStatus(current, script.get_current_head(), done, order[len(done):])


def upgrade(engine: Engine, script_location: str | Path | None = None) -> list[str]:
    """Apply every pending migration; returns the revisions applied.

    One transaction holds them all (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory
    lock), so concurrent start-ups apply each migration once, and a failure leaves the
    schema and the data exactly as they were.
    """
    config = _config(script_location)
    pending = status(engine, script_location).pending
    if not pending:
        return []
    try:
        with engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                if not is_sqlite(engine):
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
    except Exception as exc:
        applied = config.attributes.get("applied", [])
        failed = next((rev for rev in pending if rev not in applied), pending[0])
        where = describe_url(engine)
        hint = explain(exc, where)
        if hint and "syntax" not in hint:
            raise DatabaseProblem(f"migration {failed} could not run: {hint}") from exc
        raise MigrationFailed(
            f"migration {failed} failed and was rolled back, the database at {where} is "
            f"unchanged: {_sql_error(exc)}"
        ) from exc
    applied = config.attributes.get("applied", [])
    if applied:  # empty when another process applied them while we waited for the lock
        log.info("migrations applied: %s", ", ".join(applied))
    return applied


def _sql_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    statement = getattr(exc, "statement", None)
    text = f"{type(orig).__name__}: {orig}" if orig is not None else f"{type(exc).__name__}: {exc}"
    if statement:
        text += f" [SQL: {' '.join(str(statement).split())}]"
    return text
