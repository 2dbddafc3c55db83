"""Engines for SQLite (WAL, short IMMEDIATE write transactions) and PostgreSQL."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from .files import create_private, read_only_url

DEFAULT_BUSY_TIMEOUT_MS = 5000
WAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024


def is_sqlite(engine_or_url: Engine | str | sa.URL) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else sa.make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def sqlite_path(engine_or_url: Engine | str | sa.URL) -> Path | None:
    """The database file of a SQLite engine or URL, or None for other databases."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else sa.make_url(engine_or_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    if url.query.get("uri") == "true" and url.database.startswith("file:"):
        return Path(urllib.parse.unquote(url.database[len("file:"):].split("?")[0]))
    return Path(url.database)


def describe_url(engine_or_url: Engine | str | sa.URL) -> str:
    """Where the database is, fit for a log line: the file, or the URL without password."""
    path = sqlite_path(engine_or_url)
    if path is not None:
        return str(path.resolve())
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else sa.make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


def create_engine(
    url: str | sa.URL,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    read_only: bool = False,
    **kwargs,
) -> Engine:
    """An engine with ProxyOS's connection settings.

    SQLite: WAL (its file kept to 32 MB when it restarts), synchronous=NORMAL,
    foreign_keys=ON, busy_timeout; transactions are
    begun explicitly (DEFERRED by default, IMMEDIATE through `write_transaction`), so DDL
    is transactional too. `read_only` opens the file so that no statement can write (and
    never creates it); otherwise a new file is created with mode 0600, and so are its WAL
    files.
    Parameters are never rendered into error messages: they may carry credentials.
    """
    url = sa.make_url(url)
    kwargs.setdefault("hide_parameters", True)
    if url.get_backend_name() != "sqlite":
        engine = sa.create_engine(url, pool_pre_ping=True, **kwargs)
        if read_only:
            event.listen(engine, "connect", _postgres_read_only)
        return engine

    path = sqlite_path(url)
    if read_only and path is not None:
        url = read_only_url(path)
    elif path is not None and url.database != ":memory:":
        create_private(path)
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if read_only:
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # When one of our commits starts the WAL again, the file is cut back to this,
            # instead of staying as large as the largest burst of writes ever made it.
            cursor.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _postgres_read_only(dbapi_connection, _record) -> None:
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    dbapi_connection.autocommit = autocommit


_write_locks: dict[int, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _process_write_lock(engine: Engine) -> threading.Lock | nullcontext:
    """One lock per SQLite engine, so this process's threads queue for the write lock in
    memory; SQLite's busy handler (sleeps of up to 100 ms) is left to other processes."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _write_locks_guard:
        return _write_locks.setdefault(id(engine), threading.Lock())


@contextmanager
def write_transaction(engine: Engine, conn: Connection | None = None) -> Iterator[Connection]:
    """A short write transaction: BEGIN IMMEDIATE on SQLite, so it never fails half-way
    on a lock upgrade; commits on success, rolls back on error. On `conn` when given (a
    connection the caller keeps for a series of transactions), else on a pooled one."""
    with _process_write_lock(engine), (nullcontext(conn) if conn is not None else engine.connect()) as conn:
        conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


@contextmanager
def sqlite_cache(conn: Connection, megabytes: int) -> Iterator[None]:
    """A larger SQLite page cache on this (pooled) connection while a large job runs on
    it (SQLite's default 2 MB spills and re-reads pages mid-batch); restored afterwards.
    Nothing on other databases."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    before = raw.execute("PRAGMA cache_size").fetchone()[0]
    raw.execute(f"PRAGMA cache_size = -{megabytes * 1024}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA cache_size = {int(before)}")
