"""Integrity checks, online backups and restores of the SQLite database."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import stat
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


class BackupRefused(DatabaseProblem):
    """The backup's destination is the live database, or a file that exists."""


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # another name (a hard link) for the same file
    except OSError:
        return False


def is_live_file(path: Path, database: Path) -> bool:
    """Whether `path` is the database or one of its WAL, shared-memory or journal files."""
    return any(_same_file(path, Path(f"{database}{suffix}")) for suffix in ("", "-wal", "-shm", "-journal"))


def _new_private_file(beside: Path, suffix: str) -> Path:
    """An empty file of a new name beside `beside`, mode 0600 from its first byte."""
    for _ in range(100):
        candidate = beside.with_name(f".{beside.name}.{secrets.token_hex(4)}{suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        return candidate
    raise DatabaseProblem(f"cannot create a new file beside {beside}")


def _put_in_place(partial: Path, destination: Path, force: bool) -> None:
    if force:
        os.replace(partial, destination)
        return
    try:
        os.link(partial, destination)  # unlike a rename, fails if the destination exists
    except FileExistsError:
        raise _exists(destination) from None
    except OSError:  # a file system without hard links
        if destination.exists():
            raise _exists(destination) from None
        os.replace(partial, destination)
        return
    partial.unlink()


def _exists(destination: Path) -> BackupRefused:
    return BackupRefused(
        f"{destination} exists, nothing was written: choose another PATH, or add --force to replace it"
    )


def backup(engine: Engine, destination: Path, *, force: bool = False) -> Path:
    """A consistent copy of the live database, taken while others keep writing.

    `VACUUM INTO` reads one snapshot (WAL readers never block writers) and writes a
    compact file, private from its first byte, which is put at `destination` only once
    it is complete and checked. An existing `destination` is replaced only with `force`;
    the live database (or its WAL) never.
    """
    live = _require_file(engine, "backup")
    destination = Path(destination)
    if is_live_file(destination, live):
        raise BackupRefused(f"{destination} is the live database: a backup never goes over it; choose another PATH")
    if destination.exists() and (not force or not destination.is_file()):
        raise _exists(destination) if destination.is_file() else BackupRefused(f"{destination} is not a file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = _new_private_file(destination, ".partial")
    try:
        raw = engine.raw_connection()  # VACUUM cannot run inside the transaction SQLAlchemy opens
        try:
            raw.driver_connection.execute("VACUUM INTO ?", (str(partial),))
        finally:
            raw.close()
        problems = file_problems(partial)
        if problems:
            raise DatabaseProblem(f"backup failed its integrity check: {'; '.join(problems[:3])}")
        _put_in_place(partial, destination, force)
    finally:
        partial.unlink(missing_ok=True)
    return destination


def _kept_name(database: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = database.with_name(f"{database.name}.replaced-{stamp}")
    n = 1
    while kept.exists():
        kept, n = database.with_name(f"{database.name}.replaced-{stamp}-{n}"), n + 1
    return kept


def restore(database: Path, backup_file: Path) -> Path | None:
    """Replace `database` with `backup_file`; the replaced file is kept beside it.

    The backup is checked first. The live file may be corrupt, or not a database at
    all: it is kept as it is, with its WAL. The workers and the dashboard must be
    stopped: a process that still has the old file open would keep writing to it.
    Returns where the replaced database was kept (None when there was none).
    """
    database, backup_file = Path(database), Path(backup_file)
    problems = file_problems(backup_file)
    if problems:
        raise DatabaseProblem(
            f"{backup_file} is not a sound backup, nothing was restored: {'; '.join(problems[:3])}"
        )
    if is_live_file(backup_file, database):
        raise DatabaseProblem(f"{backup_file} is the live database itself; name a backup")
    mode = stat.S_IMODE(database.stat().st_mode) if database.is_file() else 0o600
    incoming = _new_private_file(database, ".restoring")
    try:
        with backup_file.open("rb") as source, incoming.open("wb") as target:
            shutil.copyfileobj(source, target)
            target.flush()
            os.fsync(target.fileno())
        os.chmod(incoming, mode)  # an existing database keeps its mode
        # The replaced file is not opened (SQLite may delete the WAL of a file it cannot
        # read): it is kept as it is, with its WAL under the matching name, which SQLite
        # folds in when the kept file is opened. The WAL is never left to be replayed onto
        # the restored file.
        kept = _kept_name(database) if database.exists() else None
        if kept is not None:
            os.replace(database, kept)
        wal = Path(f"{database}-wal")
        if wal.exists():
            os.replace(wal, Path(f"{kept or _kept_name(database)}-wal"))
        Path(f"{database}-shm").unlink(missing_ok=True)
        os.replace(incoming, database)
    finally:
        incoming.unlink(missing_ok=True)
    return kept
