"""The database module on real files: pragmas, write transactions, checks, backup, restore."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import WAL_SIZE_LIMIT_BYTES, create_engine, write_transaction
from db.errors import DatabaseProblem
from db.maintenance import backup, file_problems, integrity_problems, restore
from tests.toolkit.factories import add_route
from tests.toolkit.processes import run_cli
from tests.toolkit.snapshots import file_mode


def _path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_sqlite_connections_use_wal_normal_sync_foreign_keys_and_busy_timeout(sqlite_url):
    engine = create_engine(sqlite_url, busy_timeout_ms=1234)
    with engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 1234
    engine.dispose()


def test_the_wal_file_is_cut_back_once_it_starts_again(engine, sqlite_url):
    """A burst of writes grows the WAL file; it does not stay that large."""
    wal = Path(f"{sqlite_url.removeprefix('sqlite:///')}-wal")
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE burst (blob BLOB)")
        conn.exec_driver_sql(
            "INSERT INTO burst WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
            " WHERE i < 20000) SELECT randomblob(4000) FROM n")
    grown = wal.stat().st_size
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    with write_transaction(engine) as conn:  # starts the WAL again, from its beginning
        conn.exec_driver_sql("DELETE FROM burst WHERE rowid = 1")
    assert grown > 2 * WAL_SIZE_LIMIT_BYTES
    assert wal.stat().st_size <= WAL_SIZE_LIMIT_BYTES


def test_write_transaction_takes_the_write_lock_at_begin(engine, sqlite_url):
    """BEGIN IMMEDIATE: a second writer is refused while the first holds the lock, even
    before the first has written anything."""
    other = sqlite3.connect(_path(sqlite_url), timeout=0, isolation_level=None)
    with write_transaction(engine), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


def test_write_transaction_rolls_back_on_error(any_engine):
    with pytest.raises(RuntimeError), write_transaction(any_engine) as conn:
        conn.execute(sa.text("INSERT INTO job_leases (job, owner, expires_at) VALUES ('x', 'o', 1)"))
        raise RuntimeError("boom")
    with any_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM job_leases")).scalar() == 0


def test_ddl_is_transactional_on_sqlite(engine):
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        raise RuntimeError("roll it back")
    assert not sa.inspect(engine).has_table("scratch")


def test_foreign_keys_cascade(engine):
    with engine.begin() as conn:
        add_route(conn, "d.example", id="r", name="n", upstreams="[]", created_at=1)
        conn.execute(sa.text(
            "INSERT INTO health_checks (id, route_id, checked_at, overall_status) VALUES ('h', 'r', 1, 'healthy')"))
        conn.execute(sa.text("DELETE FROM routes WHERE id = 'r'"))
        assert conn.execute(sa.text("SELECT count(*) FROM health_checks")).scalar() == 0


def _corrupt(path: Path) -> None:
    """Overwrite the pages after the header with garbage, as a failing disk might."""
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(4096)
        handle.write(os.urandom(max(size - 4096, 8192)))


def _fill(engine, rows: int = 2000) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            sa.text("INSERT INTO access_log (id, route_id, path, recorded_at) VALUES (:id, 'r', :p, :t)"),
            [{"id": f"id{i}", "p": "/" + "x" * 200, "t": i} for i in range(rows)],
        )
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def test_integrity_check_finds_corruption(engine, sqlite_url):
    _fill(engine)
    assert integrity_problems(engine) == []
    engine.dispose()
    _corrupt(_path(sqlite_url))
    broken = create_engine(sqlite_url)
    try:
        problems = integrity_problems(broken)
    except sa.exc.DatabaseError as exc:  # SQLite may refuse to read the pages at all
        problems = [str(exc.orig)]
    broken.dispose()
    assert problems


def test_start_up_refuses_a_corrupt_database(engine, sqlite_url, worker_env):
    _fill(engine)
    engine.dispose()
    _corrupt(_path(sqlite_url))
    for command in (["migrate"], ["run-once", "backup"]):
        result = run_cli(command, worker_env)
        assert result.returncode == 1, result.stderr
        assert str(_path(sqlite_url)) in result.stderr
        assert "proxyos-worker db restore" in result.stderr
        assert "Traceback" not in result.stderr
    check = run_cli(["db", "check"], worker_env)
    assert check.returncode == 1 and check.stdout.strip() != "ok"


@pytest.fixture
def small_disk(tmpfs):
    """A 2 MiB file system that can be filled up or made read-only."""
    return tmpfs("2m")


def _env_on(disk: Path, worker_env: dict) -> dict:
    return dict(worker_env, PROXYOS_DATABASE_URL=f"sqlite:///{disk / 'proxyos.db'}")


def test_read_only_file_system_gives_one_clear_line(small_disk, worker_env):
    env = _env_on(small_disk, worker_env)
    assert run_cli(["migrate"], env).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for command in (["migrate"], ["run-once", "backup"]):
        result = run_cli(command, env)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(small_disk / "proxyos.db") in lines[0], result.stderr
        assert "writable" in lines[0]


def test_full_disk_gives_one_clear_line_and_no_damage(small_disk, worker_env):
    env = _env_on(small_disk, worker_env)
    (small_disk / "ballast").write_bytes(b"\0" * (2 * 1024 * 1024 - 64 * 1024))
    result = run_cli(["migrate"], env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk is full" in lines[0], result.stderr
    (small_disk / "ballast").unlink()
    assert run_cli(["migrate"], env).returncode == 0
    assert run_cli(["db", "check"], env).stdout.strip() == "ok"


def test_a_path_that_cannot_be_a_directory_gives_one_clear_line(tmp_path, worker_env):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    env = dict(worker_env, PROXYOS_DATABASE_URL=f"sqlite:///{blocker / 'proxyos.db'}")
    result = run_cli(["migrate"], env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(blocker) in result.stderr


def test_backup_is_consistent_while_another_process_writes(engine, sqlite_url, tmp_path):
    """A writer commits pairs of rows in single transactions; a backup taken meanwhile
    holds whole pairs only, and passes its integrity check."""
    stop = threading.Event()
    writer_engine = create_engine(sqlite_url)

    def write() -> None:
        n = 0
        while not stop.is_set():
            with write_transaction(writer_engine) as conn:
                for half in ("a", "b"):
                    conn.execute(
                        sa.text("INSERT INTO access_log (id, route_id, recorded_at) VALUES (:id, 'r', :t)"),
                        {"id": f"{n}{half}", "t": n},
                    )
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        copies = [backup(engine, tmp_path / f"copy{i}.db") for i in range(3)]
    finally:
        stop.set()
        thread.join()
        writer_engine.dispose()
    for copy in copies:
        assert file_problems(copy) == []
        assert file_mode(copy) == 0o600
        conn = sqlite3.connect(copy)
        count = conn.execute("SELECT count(*) FROM access_log").fetchone()[0]
        conn.close()
        assert count % 2 == 0


def test_restore_checks_the_backup_and_keeps_the_replaced_file(engine, sqlite_url, tmp_path):
    _fill(engine, rows=10)
    saved = backup(engine, tmp_path / "saved.db")
    _fill_more = sa.text("INSERT INTO access_log (id, route_id, recorded_at) VALUES ('late', 'r', 1)")
    with write_transaction(engine) as conn:
        conn.execute(_fill_more)
    engine.dispose()

    kept = restore(_path(sqlite_url), saved)
    assert kept.exists()
    conn = sqlite3.connect(kept)
    assert conn.execute("SELECT count(*) FROM access_log").fetchone()[0] == 11
    conn.close()
    conn = sqlite3.connect(_path(sqlite_url))
    assert conn.execute("SELECT count(*) FROM access_log").fetchone()[0] == 10
    conn.close()


def test_restore_refuses_a_corrupt_backup(engine, sqlite_url, tmp_path):
    _fill(engine)
    bad = backup(engine, tmp_path / "bad.db")
    _corrupt(bad)
    before = _path(sqlite_url).read_bytes()
    with pytest.raises(DatabaseProblem, match="not a sound backup"):
        restore(_path(sqlite_url), bad)
    assert _path(sqlite_url).read_bytes() == before


def test_backup_of_postgres_says_to_use_pg_dump(postgres_url, tmp_path):
    engine = create_engine(postgres_url)
    with pytest.raises(DatabaseProblem, match="pg_dump"):
        backup(engine, tmp_path / "x.db")
    engine.dispose()
