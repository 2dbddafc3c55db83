"""`proxyos-worker migrate [--status]`."""

from __future__ import annotations

from db.engine import create_engine, describe_url, sqlite_path
from db.migrate import status

from ..startup import open_database
from .common import add_command, print_json


def register(commands) -> None:
    parser = add_command(
        commands,
        "migrate",
        help="apply pending schema migrations (also done by `run` at start-up)",
        description="Apply every pending migration in one transaction: all of them, or on "
        "error none (the database is left exactly as it was and the command exits 1). "
        "Migrations only add tables, columns and indexes; a database created by ProxyOS "
        "itself is adopted as it is. Run it with the dashboard up: it holds the write "
        "lock only while it works.",
        example="proxyos-worker migrate --status",
    )
    parser.add_argument("--status", action="store_true", help="list applied and pending revisions, change nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=handle)


def handle(args, settings) -> int:
    if not args.status:
        open_database(settings, migrate=True).dispose()
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():  # --status creates nothing: all are pending
        state = status(None)
    else:
        engine = create_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms)
        try:
            state = status(engine)
        finally:
            engine.dispose()
    if args.json:
        print_json({"database": describe_url(settings.database_url), **state.__dict__})
        return 0
    missing = " (not created yet)" if path is not None and not path.exists() else ""
    print(f"database: {describe_url(settings.database_url)}{missing}")
    print(f"current:  {state.current or '(none)'}   head: {state.head}")
    for rev in state.applied:
        print(f"  applied  {rev}")
    for rev in state.pending:
        print(f"  pending  {rev}")
    if not args.status:
        print("up to date")
    return 0
