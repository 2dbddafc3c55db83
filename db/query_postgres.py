"""One read-only statement on PostgreSQL.

What holds by construction, whatever the text:
- one statement: it is sent with the extended protocol (a prepared statement), which
  the server refuses to hold several statements;
- no write: it runs in a READ ONLY transaction that is rolled back; the server refuses
  to make a transaction read-write once a query has run in it, and a single statement
  cannot end the transaction;
- least privilege: where the user may (PostgreSQL 14+, a superuser or a member), it runs
  as `pg_read_all_data`, which may read every table and no server file or program.
And before anything is sent, PostgreSQL's own parser (pglast) must find one SELECT,
VALUES, EXPLAIN or SHOW with nothing inside that writes, locks or creates; and no name in
it may be a volatile function or an operator built on one, as the server's catalog
marks them (set_config, pg_read_file, lo_export, query_to_xml, advisory locks, dblink,
nextval ...), apart from a few harmless ones. `statement_timeout` bounds the time.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .engine import describe_url
from .pg_statement import NotARead, read_statement
from .query import QueryFailed, QueryRefused, QueryResult, one_line

READ_ROLE = "pg_read_all_data"
HARMLESS_VOLATILE = frozenset({"random", "clock_timestamp", "timeofday", "gen_random_uuid"})

_VOLATILE_NAMES = """
SELECT p.proname FROM pg_catalog.pg_proc p
 WHERE p.proname = ANY(%(names)s) AND p.provolatile = 'v'
UNION
SELECT o.oprname FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
 WHERE o.oprname = ANY(%(names)s) AND p.provolatile = 'v'
"""
_MAY_READ_AS_ROLE = (
    "SELECT pg_catalog.pg_has_role(current_user, oid, 'MEMBER') FROM pg_catalog.pg_roles WHERE rolname = %s"
)


def _checked(sql: str):
    try:
        return read_statement(sql)
    except ImportError:
        raise QueryRefused("db query on PostgreSQL needs pglast: pip install 'proxyos-workers[postgres]'") from None
    except NotARead as exc:
        raise QueryRefused(f"db query is read-only: {exc}") from None
    except Exception as exc:  # pglast.parser.ParseError: the server would say the same
        raise QueryFailed(f"db query failed: {one_line(exc)}") from None


def run_postgres(url: sa.URL, sql: str, *, timeout_s: float) -> QueryResult:
    statement = _checked(sql)
    engine = sa.create_engine(url, poolclass=NullPool, hide_parameters=True)
    try:
        raw = engine.raw_connection()
    except Exception as exc:  # the driver's own error, wrapped or not: it never holds the password
        detail = one_line(getattr(exc, "orig", None) or exc)
        raise QueryFailed(f"db query cannot reach the database at {describe_url(url)}: {detail}") from None
    conn = raw.driver_connection
    try:
        conn.rollback()
        conn.read_only = True  # the next transaction is BEGIN READ ONLY
        with conn.cursor() as cursor:
            cursor.execute(_VOLATILE_NAMES, {"names": sorted(statement.names)})
            volatile = sorted({row[0] for row in cursor} - HARMLESS_VOLATILE)
            if volatile:
                raise QueryRefused(
                    f"db query is read-only: {', '.join(volatile)} can change state or reach outside the database"
                )
            cursor.execute("SELECT pg_catalog.set_config('statement_timeout', %s, true)",
                           (str(max(1, int(timeout_s * 1000))),))
            cursor.execute(_MAY_READ_AS_ROLE, (READ_ROLE,))
            if any(row[0] for row in cursor):
                cursor.execute(f"SET LOCAL ROLE {READ_ROLE}")
            cursor.execute(sql, prepare=True)
            columns = [d.name for d in cursor.description or ()]
            rows = [list(row) for row in cursor.fetchall()] if cursor.description else []
    except QueryRefused:
        raise
    except Exception as exc:
        raise _explain(exc, timeout_s) from None
    finally:
        with contextlib.suppress(Exception):  # the connection is thrown away in any case
            conn.rollback()
        raw.close()
        engine.dispose()
    return QueryResult(columns, rows)


def _explain(exc: Exception, timeout_s: float) -> Exception:
    detail = one_line(exc)
    lowered = detail.lower()
    if "statement timeout" in lowered:
        return QueryFailed(f"db query stopped after {timeout_s:g} s (--timeout)")
    if "multiple commands" in lowered:
        return QueryRefused("db query is read-only: it runs one statement, this text has several")
    if "read-only transaction" in lowered or "permission denied" in lowered or "must be superuser" in lowered:
        return QueryRefused(f"db query is read-only: {detail}")
    return QueryFailed(f"db query failed: {detail}")
