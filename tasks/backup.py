"""The `backup` job: an online copy of the SQLite database, verified, newest N kept."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy.engine import Engine

from db.engine import sqlite_path
from db.maintenance import backup

from .outcome import Skipped

PREFIX = "proxyos-"
SUFFIX = ".db"


def backup_database(engine: Engine, backup_dir: Path, keep: int = 30, now: float | None = None) -> dict:
    """Write `proxyos-YYYYmmddTHHMMSSZ.db` into `backup_dir`; keep the newest `keep` copies."""
    if sqlite_path(engine) is None:
        raise Skipped("backups are made of SQLite databases; back up PostgreSQL with pg_dump")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = backup(engine, Path(backup_dir) / f"{PREFIX}{stamp}{SUFFIX}")
    removed = prune_backups(Path(backup_dir), keep)
    return {"path": str(target), "bytes": target.stat().st_size, "removed": len(removed)}


def prune_backups(backup_dir: Path, keep: int) -> list[Path]:
    copies = sorted(backup_dir.glob(f"{PREFIX}*{SUFFIX}"))  # names sort by time
    old = copies[:-keep] if keep > 0 else copies
    for path in old:
        path.unlink(missing_ok=True)
    return old
