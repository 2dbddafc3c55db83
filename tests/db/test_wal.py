"""The WAL during a prune: copied back after each batch, reused from its start past its
limit even when a dashboard's commit lands during the copy, truncated at the end, and
never made to wait for readers while holding the write lock."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from db.engine import create_engine, sqlite_path
from db.migrate import upgrade
from db.wal import WalKeeper, truncate_wal


@pytest.fixture
def db(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'proxyos.db'}")
    upgrade(engine)
    truncate_wal(engine)
    yield engine
    engine.dispose()


def connect(engine) -> sqlite3.Connection:
    conn = sqlite3.connect(sqlite_path(engine), isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # only the keeper checkpoints here
    return conn


def write_batch(conn: sqlite3.Connection, tag: str, rows: int = 400) -> None:
    """A prune-like batch: enough pages to pass a small WAL limit."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO audit_log (id, action, resource_type, detail, created_at) VALUES (?, 'x', 'y', ?, 0)",
        ((f"{tag}-{i}", "z" * 1000) for i in range(rows)),
    )
    conn.execute("COMMIT")


def batches_with_a_commit_during_each_copy(engine, keeper: WalKeeper, tend) -> list[int]:
    """Five batches; after each, the keeper copies the WAL back while a dashboard's
    transaction, begun before the copy finished, commits after it (the race that keeps
    SQLite from reusing the WAL on its own); then `tend(keeper, frames)` runs, where the
    prune calls `prepare_reuse`. Returns the WAL file's size after each batch."""
    wal = Path(f"{sqlite_path(engine)}-wal")
    pruner, dashboard = connect(engine), connect(engine)
    seen = []
    try:
        for n in range(5):
            write_batch(pruner, f"batch{n}")
            dashboard.execute("BEGIN IMMEDIATE")
            dashboard.execute("INSERT INTO audit_log (id, action, resource_type, created_at) "
                              "VALUES (?, 'dash', 'y', 0)", (f"dash{n}",))
            frames = keeper.copy()
            dashboard.execute("COMMIT")
            tend(keeper, frames)
            seen.append(wal.stat().st_size)
    finally:
        pruner.close()
        dashboard.close()
    return seen


def prepare_reuse(keeper: WalKeeper, frames: int) -> None:
    keeper.prepare_reuse(frames)


def do_nothing(keeper: WalKeeper, frames: int) -> None:
    pass


@pytest.mark.parametrize("limit_mb, restarts", [(0.4, 0), (0.2, 5)], ids=["copied-again", "restart"])
def test_past_its_limit_the_wal_is_reused_though_a_commit_landed_during_the_copy(db, limit_mb, restarts):
    """A batch writes about 0.6 MB of WAL: past a 0.4 MB limit (but within twice it)
    the WAL is copied back again, lock-free; past twice a 0.2 MB limit, RESTART."""
    with WalKeeper(db, limit_mb=limit_mb) as keeper:
        sizes = batches_with_a_commit_during_each_copy(db, keeper, prepare_reuse)
    assert keeper.restarts == restarts
    assert max(sizes) < 1.5 * sizes[0]  # the batches reuse the WAL from its start


def test_without_that_the_race_makes_the_wal_grow_with_every_batch(db):
    """The control for the test above."""
    with WalKeeper(db, limit_mb=0.2) as keeper:
        sizes = batches_with_a_commit_during_each_copy(db, keeper, do_nothing)
    assert sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0]


def test_the_keeper_restores_the_busy_timeout_of_the_pooled_connection(db):
    with db.connect() as conn:
        before = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    with WalKeeper(db) as keeper:
        keeper.prepare_reuse(keeper.copy())
    truncate_wal(db)
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == before > 0


def test_truncation_gives_up_instead_of_holding_the_lock_while_a_reader_stays(db):
    writer, reader = connect(db), connect(db)
    write_batch(writer, "a")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM audit_log").fetchone()  # a snapshot on the WAL
    write_batch(writer, "b")
    started = time.monotonic()
    busy, _, _ = truncate_wal(db, give_up_after_s=0.3)
    waited = time.monotonic() - started
    # the writer was never blocked meanwhile: its busy_timeout is 0 here
    writer.execute("PRAGMA busy_timeout = 0")
    write_batch(writer, "c", rows=1)
    reader.execute("COMMIT")
    assert busy == 1
    assert waited < 5  # not the engine's busy timeout
    assert truncate_wal(db)[0] == 0
    assert Path(f"{sqlite_path(db)}-wal").stat().st_size == 0
    writer.close()
    reader.close()
