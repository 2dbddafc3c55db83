"""Opening the database at start-up: refuse a corrupt file, apply pending migrations."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import create_engine, describe_url, is_sqlite, sqlite_path
from db.errors import DatabaseProblem, explain
from db.files import require_existing
from db.maintenance import integrity_problems
from db.migrate import upgrade

from .config import Settings

log = logging.getLogger("proxyos.startup")


def open_database(settings: Settings, *, migrate: bool = True, check: bool = True, create: bool = True) -> Engine:
    """The engine, after an integrity check (SQLite) and the pending migrations.

    Raises DatabaseProblem with one line a person can act on; DatabaseMissing when
    `create` is false and the SQLite file does not exist (a command that only reads).
    """
    if not create:
        require_existing(sqlite_path(settings.database_url))
    engine = create_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms)
    where = describe_url(engine)
    try:
        if check and is_sqlite(engine):
            problems = integrity_problems(engine, quick=True)
            if problems:
                raise DatabaseProblem(
                    f"{where} is corrupt ({problems[0]}); restore a backup with "
                    "`proxyos-worker db restore PATH` (backups are in PROXYOS_BACKUP_DIR)"
                )
        if migrate:
            applied = upgrade(engine)
            if applied:
                log.info("database %s migrated to %s", where, applied[-1])
    except sa.exc.DBAPIError as exc:
        hint = explain(exc, where)
        engine.dispose()
        if hint:
            raise DatabaseProblem(hint) from exc
        raise
    except Exception:
        engine.dispose()
        raise
    return engine
