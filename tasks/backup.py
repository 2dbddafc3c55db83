"""The `backup` job: an online copy of the SQLite database, verified, newest N kept."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy.engine import Engine

from db.engine import sqlite_path
from db.maintenance import backup, is_live_file

from .outcome import Skipped

PREFIX = "proxyos-"
SUFFIX = ".db"


def backup_database(engine: Engine, backup_dir: Path, keep: int = 30, now: float | None = None) -> dict:
    """Write `proxyos-YYYYmmddTHHMMSSZ.db` into `backup_dir`; keep the newest `keep` copies."""
    live = sqlite_path(engine)
    if live is None:
        raise Skipped("backups are made of SQLite databases; back up PostgreSQL with pg_dump")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = Path(backup_dir) / f"{PREFIX}{stamp}{SUFFIX}"
    if target.exists():
        raise Skipped(f"{target} was written this second already")
    backup(engine, target)
    removed = prune_backups(Path(backup_dir), keep, live)
    return {"path": str(target), "bytes": target.stat().st_size, "removed": len(removed)}


def prune_backups(backup_dir: Path, keep: int, live: Path | None = None) -> list[Path]:
    """Delete all but the newest `keep` backups; never the live database, whatever its name."""
    copies = sorted(  # names sort by time
        path for path in backup_dir.glob(f"{PREFIX}*{SUFFIX}") if live is None or not is_live_file(path, live)
    )
    old = copies[:-keep] if keep > 0 else copies
    for path in old:
        path.unlink(missing_ok=True)
    return old


def newest_backup_time(backup_dir: Path) -> float | None:
    """When the newest backup in `backup_dir` was written (its mtime), or None: a listing
    of at most PROXYOS_BACKUP_KEEP files, for `GET /metrics`."""
    newest = None
    for path in Path(backup_dir).glob(f"{PREFIX}*{SUFFIX}"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        newest = mtime if newest is None else max(newest, mtime)
    return newest
