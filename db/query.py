"""`db query`: one read-only statement on SQLite or PostgreSQL, whatever the text.

Each backend keeps several guarantees of its own (see query_sqlite and query_postgres);
this module picks the backend and gives the result or one line saying why not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .errors import DatabaseProblem


class QueryRefused(DatabaseProblem):
    """The statement could write, or reach past the database; nothing was run."""


class QueryFailed(DatabaseProblem):
    """The database could not run the statement (a syntax error, a missing table, the time limit)."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]


DEFAULT_TIMEOUT_S = 30.0


def one_line(text: object) -> str:
    """The first line of an error, for a message that is always one line."""
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else type(text).__name__


def run_query(url: str | sa.URL, sql: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
              busy_timeout_ms: int = 5000) -> QueryResult:
    """Run `sql` as one read-only statement; raises QueryRefused or QueryFailed."""
    if "\x00" in sql:
        raise QueryRefused("db query refused: the SQL contains a NUL character")
    if not sql.strip():
        raise QueryRefused("db query refused: there is no SQL to run")
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite":
        from .query_sqlite import run_sqlite

        return run_sqlite(url, sql, timeout_s=timeout_s, busy_timeout_ms=busy_timeout_ms)
    from .query_postgres import run_postgres

    return run_postgres(url, sql, timeout_s=timeout_s)
