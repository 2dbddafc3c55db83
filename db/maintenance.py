"""Integrity checks, online backups and restores of the SQLite database."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .engine import sqlite_path
from .errors import DatabaseProblem


class NotSqlite(DatabaseProblem):
    """The operation exists for SQLite files only."""


def integrity_problems(engine: Engine, quick: bool = False) -> list[str]:
    """`PRAGMA integrity_check` (or `quick_check`): an empty list means the database is ok.

    On PostgreSQL, which checks its own pages, this only proves the server answers.
    """
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            conn.execute(sa.text("SELECT 1"))
            return []
        pragma = "quick_check" if quick else "integrity_check"
        rows = [row[0] for row in conn.exec_driver_sql(f"PRAGMA {pragma}")]
    return [] if rows == ["ok"] else rows


def file_problems(path: Path) -> list[str]:
    """Integrity of a database file that no engine has open (a backup), read-only."""
    if not path.is_file():
        return [f"{path} does not exist"]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [f"{path}: {exc}"]
    return [] if rows == ["ok"] else rows


def _require_file(engine: Engine, what: str) -> Path:
    path = sqlite_path(engine)
    if path is None:
        raise NotSqlite(
            f"{what} works on SQLite files; for {engine.dialect.name} use its own tools "
            "(for PostgreSQL: pg_dump and pg_restore)"
        )
    return path


def backup(engine: Engine, destination: Path) -> Path:
    """A consistent copy of the live database, taken while others keep writing.

    `VACUUM INTO` reads one snapshot (WAL readers never block writers) and writes a
    compact file, which is renamed into place only once it is complete and checked.
    """
    _require_file(engine, "backup")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    raw = engine.raw_connection()  # VACUUM cannot run inside the transaction SQLAlchemy opens
    try:
        raw.driver_connection.execute("VACUUM INTO ?", (str(partial),))
    finally:
        raw.close()
    problems = file_problems(partial)
    if problems:
        partial.unlink(missing_ok=True)
        raise DatabaseProblem(f"backup failed its integrity check: {'; '.join(problems[:3])}")
    os.chmod(partial, 0o600)
    os.replace(partial, destination)
    return destination


def restore(database: Path, backup_file: Path) -> Path:
    """Replace `database` with `backup_file`; the replaced file is kept beside it.

    The backup is checked first. The workers and the dashboard must be stopped: a
    process that still has the old file open would keep writing to it.
    Returns where the replaced database was kept.
    """
    database, backup_file = Path(database), Path(backup_file)
    problems = file_problems(backup_file)
    if problems:
        raise DatabaseProblem(
            f"{backup_file} is not a sound backup, nothing was restored: {'; '.join(problems[:3])}"
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = database.with_name(f"{database.name}.replaced-{stamp}")
    incoming = database.with_name(database.name + ".restoring")
    shutil.copyfile(backup_file, incoming)
    os.chmod(incoming, 0o600)
    if database.exists():
        # A checkpoint folds the WAL into the file we keep, so it is whole on its own.
        conn = sqlite3.connect(database)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        os.replace(database, kept)
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    os.replace(incoming, database)
    return kept
