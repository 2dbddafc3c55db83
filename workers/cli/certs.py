"""`proxyos-worker certs [--json]`: every certificate with its status, expiry, next
renewal time and last error."""

from __future__ import annotations

import time

from tasks.certs.listing import rows

from ..startup import open_database
from .common import add_command, format_time, print_json, print_table


def register(commands) -> None:
    parser = add_command(
        commands,
        "certs",
        help="list certificates: status, expiry, next renewal, last error",
        description="List every certificate in the database with its status, expiry, the time "
        "of its next renewal (or retry) and its last error. Certificates whose route no longer "
        "uses tls_mode dns show no next renewal: they are kept, not renewed.",
        example="proxyos-worker certs\nproxyos-worker certs --json | jq '.[] | select(.status == \"error\")'",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(handler=handle)


def handle(args, settings) -> int:
    engine = open_database(settings)
    try:
        items = rows(engine, time.time())
    finally:
        engine.dispose()
    if args.json:
        print_json(items)
        return 0
    if not items:
        print("no certificates")
        return 0
    print_table(
        ["DOMAIN", "STATUS", "EXPIRES", "NEXT RENEWAL", "ID", "LAST ERROR"],
        [[i["domain"], i["status"], format_time(i["expires_at"]),
          format_time(i["next_renewal_at"]) if i["renewing"] else "not renewed",
          i["id"], (i["last_error"] or "")[:120]] for i in items],
    )
    return 0
