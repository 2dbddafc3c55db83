"""`db backup` never writes over the live database (nor any file without --force), and a
backup is private from its first byte; `db restore` works when the live file is corrupt
or not a database at all, as start-up advises."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from db.engine import create_engine
from db.errors import DatabaseProblem
from db.maintenance import backup, file_problems, restore
from tasks.backup import backup_database
from tests.toolkit.databases import add_watched_rows
from tests.toolkit.processes import run_cli, wait_until
from tests.toolkit.snapshots import file_mode, fingerprint


def _path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


@pytest.fixture
def live(engine, sqlite_url) -> Path:
    add_watched_rows(engine)
    return _path(sqlite_url)


def _spellings(live: Path) -> list[Path]:
    link = live.with_name("link.db")
    link.symlink_to(live)
    hard = live.with_name("hard.db")
    os.link(live, hard)
    return [live, live.parent / "sub" / ".." / live.name, link, hard, Path(f"{live}-wal")]


@pytest.mark.parametrize("force", [False, True])
def test_a_backup_never_goes_over_the_live_database(engine, live, force):
    before = fingerprint(engine)
    for destination in _spellings(live):
        (live.parent / "sub").mkdir(exist_ok=True)
        with pytest.raises(DatabaseProblem, match="live database"):
            backup(engine, destination, force=force)
    engine.dispose()
    assert file_problems(live) == []
    assert fingerprint(engine) == before
    assert not list(live.parent.glob("*.partial")) and not list(live.parent.glob(".*.partial"))


def test_the_command_refuses_the_live_database_with_one_line(live, engine, worker_env):
    engine.dispose()
    result = run_cli(["db", "backup", str(live), "--force"], worker_env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "live database" in lines[0], result.stderr
    assert run_cli(["db", "check"], worker_env).stdout.strip() == "ok"


def test_an_existing_file_is_replaced_only_with_force(engine, live, tmp_path):
    precious = tmp_path / "precious.db"
    precious.write_text("not mine to overwrite")
    with pytest.raises(DatabaseProblem, match="--force"):
        backup(engine, precious)
    assert precious.read_text() == "not mine to overwrite"
    backup(engine, precious, force=True)
    assert file_problems(precious) == [] and file_mode(precious) == 0o600


def test_the_backup_job_never_prunes_the_live_database(tmp_path):
    """A database whose name looks like a backup's, in the backup directory itself."""
    live = tmp_path / "proxyos-main.db"
    engine = create_engine(f"sqlite:///{live}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE kept (x INTEGER)")
    backup_database(engine, tmp_path, keep=1, now=1_700_000_000)
    backup_database(engine, tmp_path, keep=1, now=1_700_000_100)
    engine.dispose()
    assert live.exists() and file_problems(live) == []
    newest = time.strftime("proxyos-%Y%m%dT%H%M%SZ.db", time.gmtime(1_700_000_100))
    assert [p.name for p in tmp_path.glob("proxyos-2*.db")] == [newest]


def test_a_backup_is_private_while_it_is_written(engine, live, tmp_path, private_umask):
    """Another connection holds the database exclusively: the backup waits with its file
    already made, and that file is 0600 before a byte is in it."""
    engine.dispose()
    holder = sqlite3.connect(live, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("DELETE FROM job_leases")
    waiting = create_engine(f"sqlite:///{live}", busy_timeout_ms=60_000)
    done: dict = {}
    thread = threading.Thread(target=lambda: done.update(path=backup(waiting, tmp_path / "out" / "copy.db")))
    thread.start()
    try:
        partial = wait_until(lambda: next((tmp_path / "out").glob(".*partial"), None) if (tmp_path / "out").exists()
                             else None, timeout=30, what="the backup's file in progress")
        assert file_mode(partial) == 0o600
    finally:
        holder.execute("COMMIT")
        holder.close()
        thread.join()
        waiting.dispose()
    assert file_mode(done["path"]) == 0o600 and file_problems(done["path"]) == []


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 200)


def test_restore_works_when_the_live_file_is_not_a_database(live, engine, worker_env, tmp_path):
    saved = backup(engine, tmp_path / "saved.db")
    engine.dispose()
    _not_a_database(live)
    start = run_cli(["migrate"], worker_env)
    assert start.returncode == 1 and "proxyos-worker db restore" in start.stderr, start.stderr
    Path(f"{live}-wal").write_bytes(b"stale wal")  # kept beside the replaced file, never replayed
    restored = run_cli(["db", "restore", str(saved)], worker_env)
    assert restored.returncode == 0, restored.stderr
    assert "Traceback" not in restored.stderr
    [kept] = live.parent.glob(f"{live.name}.replaced-*[0-9Z]")
    assert kept.read_bytes().startswith(b"this is not a database")
    assert Path(f"{kept}-wal").read_bytes() == b"stale wal"
    assert not list(live.parent.glob("*.restoring")) and not list(live.parent.glob(".*.restoring"))
    assert run_cli(["db", "check"], worker_env).stdout.strip() == "ok"
    check = create_engine(f"sqlite:///{live}")
    assert len(fingerprint(check)[1]) == 2
    check.dispose()


def test_restore_works_when_the_live_file_is_corrupt(live, engine, tmp_path):
    saved = backup(engine, tmp_path / "saved.db")
    engine.dispose()
    with live.open("r+b") as handle:
        handle.seek(0)
        handle.write(os.urandom(4096))
    kept = restore(live, saved)
    assert kept is not None and kept.exists()
    assert file_problems(live) == []


def test_restore_refuses_the_live_database_itself_and_keeps_the_mode(live, engine, tmp_path):
    saved = backup(engine, tmp_path / "saved.db")
    engine.dispose()
    with pytest.raises(DatabaseProblem, match="live database"):
        restore(live, live)
    os.chmod(live, 0o640)
    restore(live, saved)
    assert file_mode(live) == 0o640


def test_a_database_restored_where_there_was_none_is_private(tmp_path, engine, live, private_umask):
    saved = backup(engine, tmp_path / "saved.db")
    target = tmp_path / "new" / "proxyos.db"
    target.parent.mkdir()
    assert restore(target, saved) is None
    assert file_mode(target) == 0o600
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM routes").fetchone() == (2,)

