"""`proxyos-worker db check | query SQL | backup PATH | restore PATH`."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import sqlalchemy as sa

from db.engine import create_engine, describe_url, sqlite_path
from db.files import chmod_advice, open_to_others, require_existing
from db.maintenance import NotSqlite, backup, integrity_problems, restore
from db.query import DEFAULT_TIMEOUT_S, run_query

from .common import Failure, add_command, print_json, print_table

log = logging.getLogger("proxyos")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def register(commands) -> None:
    parser = add_command(
        commands,
        "db",
        help="integrity check, read-only queries, backup and restore",
        description="Look after the database. None of these apply migrations, and none but "
        "restore creates or changes the database file.",
        example="proxyos-worker db check",
    )
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION")
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    check = sub.add_parser("check", formatter_class=fmt, help="run PRAGMA integrity_check",
                           description="Run SQLite's full integrity check, read-only. Prints `ok`, "
                           "or the problems found; the exit code is 0 only for ok. Warns when "
                           "other users may read the file.",
                           epilog="example:\n  proxyos-worker db check")
    check.set_defaults(handler=handle_check)

    query = sub.add_parser("query", formatter_class=fmt, help="run one read-only SQL query",
                           description="Run one SELECT (or VALUES, EXPLAIN, SHOW / a reporting "
                           "PRAGMA) that cannot write, whatever the text: several statements, "
                           "writes, transaction control, other files and functions that change "
                           "state (set_config, pg_read_file, lo_export, ...) are refused with one "
                           "line, and nothing changes. On PostgreSQL it runs in a READ ONLY "
                           "transaction, as pg_read_all_data where the user may.",
                           epilog="example:\n  proxyos-worker db query "
                           "\"SELECT job, status, error FROM task_runs ORDER BY started_at DESC LIMIT 5\"")
    query.add_argument("sql", help="the SQL statement")
    query.add_argument("--json", action="store_true", help="print rows as a JSON list of objects")
    query.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help=f"stop the query after this long (default {DEFAULT_TIMEOUT_S:g})")
    query.set_defaults(handler=handle_query)

    make = sub.add_parser("backup", formatter_class=fmt, help="write a consistent copy of the live database",
                          description="Copy the database to PATH while the dashboard and the "
                          "workers keep writing (VACUUM INTO); the copy is private (mode 0600) "
                          "from its first byte, integrity-checked, and only then put at PATH. An "
                          "existing PATH is never replaced without --force, and the live "
                          "database never. SQLite only.",
                          epilog="example:\n  proxyos-worker db backup /var/backups/proxyos-today.db")
    make.add_argument("path", type=Path)
    make.add_argument("--force", action="store_true", help="replace PATH if it exists (never the live database)")
    make.set_defaults(handler=handle_backup)

    back = sub.add_parser("restore", formatter_class=fmt, help="replace the database with a backup",
                          description="Check the backup's integrity, then put it in place of the "
                          "database, also when the database is corrupt or not a database at all. "
                          "The replaced file (and its WAL) is kept beside it as "
                          "<name>.replaced-<time>. Stop the workers and the dashboard first.",
                          epilog="example:\n  proxyos-worker db restore data/backups/proxyos-20261125T030000Z.db")
    back.add_argument("path", type=Path)
    back.set_defaults(handler=handle_restore)


def handle_check(args, settings) -> int:
    path = sqlite_path(settings.database_url)
    require_existing(path)
    engine = create_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms, read_only=True)
    try:
        problems = integrity_problems(engine)
    except sa.exc.DatabaseError as exc:
        problems = [str(getattr(exc, "orig", exc))]
    finally:
        engine.dispose()
    if path is not None and open_to_others(path):
        log.warning("%s can be read by every user on this machine; run `%s`", path, chmod_advice(path))
    if problems:
        print(f"{describe_url(settings.database_url)}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print("ok")
    return 0


def handle_query(args, settings) -> int:
    result = run_query(settings.database_url, args.sql, timeout_s=args.timeout,
                       busy_timeout_ms=settings.busy_timeout_ms)
    if args.json:
        print_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
    elif result.columns:
        print_table(result.columns, result.rows)
    return 0


def handle_backup(args, settings) -> int:
    require_existing(sqlite_path(settings.database_url))
    engine = create_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms)
    try:
        target = backup(engine, args.path, force=args.force)
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
    if kept is not None:
        print(f"the replaced database is kept as {kept}")
    return 0
