"""`proxyos-worker certs [--json]`: every certificate with its status, expiry, next
renewal time, what Caddy was given, and last error."""

from __future__ import annotations

import time

from tasks.certs.isolation import number
from tasks.certs.listing import rows

from .common import add_command, format_duration, format_time, print_json, print_table, with_database


def register(commands) -> None:
    parser = add_command(
        commands,
        "certs",
        help="list certificates: status, expiry, next renewal, last error",
        description="List every certificate in the database with its status, expiry, the time "
        "of its next renewal (or retry), its last error and who manages it, and (column IN CADDY) the "
        "serial of the certificate loaded into Caddy and since when, or for how long the current one "
        "has been waiting to be loaded (PROXYOS_CADDY_ADMIN_URL), the reason then in LAST ERROR. The workers renew "
        "only dns01 certificates of routes with tls_mode dns; the others are Caddy's or "
        "ProxyOS's and are listed read-only. Certificates whose route no longer uses tls_mode "
        "dns show no next renewal: they are kept, not renewed.",
        example="proxyos-worker certs\nproxyos-worker certs --json | jq '.[] | select(.status == \"error\")'",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(handler=handle)


def handle(args, settings) -> int:
    items = with_database(settings, lambda engine: rows(engine, time.time()))
    if args.json:
        print_json(items)
        return 0
    if not items:
        print("no certificates")
        return 0
    print_table(
        ["DOMAIN", "STATUS", "EXPIRES", "NEXT RENEWAL", "MANAGED BY", "IN CADDY", "ID", "LAST ERROR"],
        [[i["domain"], i["status"], _time(i["expires_at"]), _next(i), _manager(i), _caddy(i),
          i["id"], str(_error(i))[:160]] for i in items],
    )
    return 0


def _time(value: object) -> str:
    """A time column for the table; what is no time (someone wrote text there) as it is."""
    try:
        return format_time(number(value)) if number(value) is not None or not value else repr(value)
    except (OverflowError, ValueError, OSError):
        return repr(value)


def _caddy(item: dict) -> str:
    """The certificate Caddy was given (serial, when), or for how long the current one
    has been waiting to be loaded."""
    deployed = item.get("caddy")
    if not deployed:
        return "-"
    if deployed["pending_since"]:
        return f"waiting {format_duration(deployed['pending_for_s'])}, next {_time(deployed['next_attempt_at'])}"
    return f"serial {str(deployed['serial'])[:16]} since {_time(deployed['deployed_at'])}"


def _error(item: dict) -> str:
    deployed = item.get("caddy") or {}
    if deployed.get("pending_since") and deployed.get("last_error"):
        caddy = f"Caddy: {deployed['last_error']}"
        return f"{item['last_error']}; {caddy}" if item["last_error"] else caddy
    return item["last_error"] or ""


def _next(item: dict) -> str:
    if item["renewing"]:
        return _time(item["next_renewal_at"])
    return "not renewed" if item["managed_by"] == "workers" else "not by the workers"


def _manager(item: dict) -> str:
    if item["shares_certificate_of"]:
        return f"workers (certificate of {item['shares_certificate_of']})"
    return item["managed_by"]
