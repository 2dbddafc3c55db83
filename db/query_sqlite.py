"""One read-only statement on a SQLite file.

Four locks, each enough for writes to the database on its own: the file is opened
read-only (`mode=ro`), `PRAGMA query_only`, an authorizer that allows reading and
nothing else (no ATTACH, so no other file is opened or created: not by VACUUM INTO
either), and the driver's rule of one statement per call. A progress handler stops a
statement that runs longer than its time limit.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

from .engine import sqlite_path
from .files import read_only_url, require_existing
from .query import QueryFailed, QueryRefused, QueryResult, one_line

_READS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
# Pragmas that only report, whatever their argument (a table or index name).
_REPORTING_PRAGMAS = {
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check", "collation_list",
    "function_list", "module_list", "pragma_list", "database_list", "compile_options",
}
# Pragmas that set something when given a value, and only report without one.
_SETTING_PRAGMAS = {
    "user_version", "application_id", "schema_version", "data_version", "page_count", "page_size",
    "freelist_count", "journal_mode", "encoding", "foreign_keys", "busy_timeout", "cache_size",
    "auto_vacuum", "synchronous", "query_only",
}
# SQL functions that reach outside the database (most are absent from Python's sqlite3;
# they are refused by name in case a build has them).
_FUNCTIONS_REFUSED = {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "fts5"}
_PROGRESS_STEPS = 10_000
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name
    for name in (
        "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE", "CREATE_TEMP_TRIGGER",
        "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "DELETE", "DROP_INDEX", "DROP_TABLE",
        "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW", "DROP_TRIGGER",
        "DROP_VIEW", "INSERT", "TRANSACTION", "UPDATE", "DETACH", "ALTER_TABLE", "REINDEX", "ANALYZE",
        "CREATE_VTABLE", "DROP_VTABLE", "SAVEPOINT",
    )
}


class _Authorizer:
    """Allows what a read needs; remembers the first thing it refused, for the message."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None, _db, _trigger) -> int:
        if action in _READS or (action == sqlite3.SQLITE_FUNCTION and arg2.lower() not in _FUNCTIONS_REFUSED):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _REPORTING_PRAGMAS or (name in _SETTING_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
        if self.refused is None:
            self.refused = _describe(action, arg1, arg2)
        return sqlite3.SQLITE_DENY


def _describe(action: int, arg1: str | None, arg2: str | None) -> str:
    if action == sqlite3.SQLITE_FUNCTION:
        return f"the function {arg2}() reaches outside the database"
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}" + (" with a value changes a setting" if arg2 is not None else " is not a report")
    if action == sqlite3.SQLITE_ATTACH:
        return "ATTACH and VACUUM INTO open other files"
    what = _ACTION_NAMES.get(action, f"action {action}").replace("_", " ")
    return f"{what}{' ' + arg1 if arg1 else ''} is not a read"


def _open(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    uri = read_only_url(path).database
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA query_only = ON")
    return conn


def run_sqlite(url: sa.URL, sql: str, *, timeout_s: float, busy_timeout_ms: int) -> QueryResult:
    path = sqlite_path(url)
    require_existing(path)
    try:
        conn = _open(path, busy_timeout_ms)
    except sqlite3.Error as exc:
        raise QueryFailed(f"db query cannot open {path}: {one_line(exc)}") from None
    authorizer = _Authorizer()
    deadline = time.monotonic() + timeout_s
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
    conn.set_authorizer(authorizer)
    try:
        cursor = conn.execute(sql)
        columns = [d[0] for d in cursor.description or ()]
        rows = [list(row) for row in cursor.fetchall()]
    except sqlite3.ProgrammingError as exc:
        if "one statement" in str(exc):
            raise QueryRefused("db query is read-only: it runs one statement, this text has several") from None
        raise QueryFailed(f"db query failed: {one_line(exc)}") from None
    except sqlite3.Error as exc:
        raise _explain(exc, authorizer, timeout_s) from None
    finally:
        conn.close()
    return QueryResult(columns, rows)


def _explain(exc: sqlite3.Error, authorizer: _Authorizer, timeout_s: float) -> Exception:
    detail = one_line(exc)
    if authorizer.refused:
        return QueryRefused(f"db query is read-only: {authorizer.refused}")
    if "interrupted" in detail:
        return QueryFailed(f"db query stopped after {timeout_s:g} s (--timeout)")
    if any(word in detail.lower() for word in ("readonly", "read-only", "not authorized")):
        return QueryRefused(f"db query is read-only: {detail}")
    return QueryFailed(f"db query failed: {detail}")
