"""The SQLite database file on disk: created private, never created by a reader, its
mode checked."""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import urllib.parse
from pathlib import Path

import sqlalchemy as sa

from .errors import DatabaseProblem

PRIVATE = 0o600


class DatabaseMissing(DatabaseProblem):
    """A command that only reads was pointed at a database file that does not exist."""


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists, before SQLite opens it: SQLite
    then gives its -wal and -shm files the same mode. An existing file keeps its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE))


def require_existing(path: Path | None) -> None:
    """Raise DatabaseMissing when the SQLite file `path` does not exist (None: not SQLite)."""
    if path is not None and not path.exists():
        raise DatabaseMissing(
            f"{path.absolute()} does not exist: check PROXYOS_DATABASE_URL or PROXYOS_DB_PATH "
            "(`proxyos-worker migrate` creates a new database)"
        )


def read_only_url(path: Path) -> sa.URL:
    """A URL that opens `path` read-only, whatever characters its name has."""
    quoted = urllib.parse.quote(str(path), safe="/")
    return sa.URL.create("sqlite", database=f"file:{quoted}?mode=ro", query={"uri": "true"})


def open_to_others(path: Path) -> bool:
    """Whether users other than the owner (and its group) may read the file."""
    return bool(path.stat().st_mode & stat.S_IROTH)


def chmod_advice(path: Path) -> str:
    """The command that makes the database and its WAL files private."""
    names = [shlex.quote(str(p)) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    return "chmod 600 " + " ".join(names)
