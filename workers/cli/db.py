"""`proxyos-worker db check | query SQL | backup PATH | restore PATH`."""

from __future__ import annotations

import argparse
from pathlib import Path

import sqlalchemy as sa

from db.engine import create_engine, describe_url, sqlite_path
from db.maintenance import NotSqlite, backup, integrity_problems, restore

from .common import Failure, add_command, print_json, print_table


def register(commands) -> None:
    parser = add_command(
        commands,
        "db",
        help="integrity check, read-only queries, backup and restore",
        description="Look after the database. None of these apply migrations.",
        example="proxyos-worker db check",
    )
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION")
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    check = sub.add_parser("check", formatter_class=fmt, help="run PRAGMA integrity_check",
                           description="Run SQLite's full integrity check. Prints `ok`, or the "
                           "problems found; the exit code is 0 only for ok.",
                           epilog="example:\n  proxyos-worker db check")
    check.set_defaults(handler=handle_check)

    query = sub.add_parser("query", formatter_class=fmt, help="run one read-only SQL query",
                           description="Run SQL on a connection that cannot write; a statement "
                           "that tries to write fails with a clear error and changes nothing.",
                           epilog="example:\n  proxyos-worker db query "
                           "\"SELECT job, status, error FROM task_runs ORDER BY started_at DESC LIMIT 5\"")
    query.add_argument("sql", help="the SQL statement")
    query.add_argument("--json", action="store_true", help="print rows as a JSON list of objects")
    query.set_defaults(handler=handle_query)

    make = sub.add_parser("backup", formatter_class=fmt, help="write a consistent copy of the live database",
                          description="Copy the database to PATH while the dashboard and the "
                          "workers keep writing (VACUUM INTO); the copy is integrity-checked and "
                          "written with mode 0600. SQLite only.",
                          epilog="example:\n  proxyos-worker db backup /var/backups/proxyos-today.db")
    make.add_argument("path", type=Path)
    make.set_defaults(handler=handle_backup)

    back = sub.add_parser("restore", formatter_class=fmt, help="replace the database with a backup",
                          description="Check the backup's integrity, then put it in place of the "
                          "database. The replaced file is kept beside it as "
                          "<name>.replaced-<time>. Stop the workers and the dashboard first.",
                          epilog="example:\n  proxyos-worker db restore data/backups/proxyos-20261125T030000Z.db")
    back.add_argument("path", type=Path)
    back.set_defaults(handler=handle_restore)


def _engine(settings, read_only: bool = False):
    return create_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms, read_only=read_only)


def handle_check(args, settings) -> int:
    engine = _engine(settings)
    try:
        problems = integrity_problems(engine)
    except sa.exc.DatabaseError as exc:
        problems = [str(getattr(exc, "orig", exc))]
    finally:
        engine.dispose()
    if problems:
        print(f"{describe_url(engine)}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print("ok")
    return 0


def handle_query(args, settings) -> int:
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        raise Failure(f"{path} does not exist yet; `proxyos-worker migrate` creates it")
    engine = _engine(settings, read_only=True)
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(args.sql)
            columns = list(result.keys()) if result.returns_rows else []
            rows = [list(row) for row in result] if result.returns_rows else []
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        detail = str(exc.orig).strip()
        if any(word in detail.lower() for word in ("readonly", "read-only", "read only")):
            raise Failure(f"db query is read-only: {detail}") from None
        raise Failure(f"query failed: {detail}") from None
    finally:
        engine.dispose()
    if args.json:
        print_json([dict(zip(columns, row, strict=True)) for row in rows])
    elif columns:
        print_table(columns, rows)
    return 0


def handle_backup(args, settings) -> int:
    engine = _engine(settings)
    try:
        target = backup(engine, args.path)
    except NotSqlite as exc:
        raise Failure(str(exc)) from None
    finally:
        engine.dispose()
    print(f"backup written: {target} ({target.stat().st_size} bytes, integrity ok)")
    return 0


def handle_restore(args, settings) -> int:
    path = sqlite_path(settings.database_url)
    if path is None:
        raise Failure("restore works on SQLite files; for PostgreSQL use pg_restore")
    kept = restore(path, args.path)
    print(f"restored {args.path} into {path}")
    if kept.exists():
        print(f"the replaced database is kept as {kept}")
    return 0
