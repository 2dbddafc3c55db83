"""`proxyos-worker`: the subcommands, each a module of this package with `register`,
listed in `COMMANDS` (in the order `--help` shows them)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import sqlalchemy as sa

from db.engine import describe_url
from db.errors import explain
from db.problem import Problem

from .. import config, logs
from . import alerts, certs, db, jobs, migrate, run, serve, status, traffic

COMMANDS = (alerts, certs, db, jobs, migrate, run, serve, status, traffic)

DESCRIPTION = """\
Background workers of ProxyOS: health checks, certificates, traffic, backups.

Configuration comes from environment variables (PROXYOS_DB_PATH, PROXYOS_DATABASE_URL,
PROXYOS_QUEUE_URL, PROXYOS_SECRET, PROXYOS_JOBS, PROXYOS_BACKUP_DIR, LOG_LEVEL,
PROXYOS_LOG_FORMAT, ...); see the README for the full list. PROXYOS_JOBS chooses what
these workers run (default all; e.g. all,-health leaves route health checks to ProxyOS).
"""

EXAMPLES = """\
examples:
  proxyos-worker run                      consumer + periodic scheduler (the Procfile's worker)
  proxyos-worker migrate --status         which schema revisions are applied and pending
  proxyos-worker run-once backup --json   run one job now, in the foreground
  proxyos-worker status                   what every periodic job did last, and the queue
  proxyos-worker db check                 integrity of the database
  proxyos-worker serve                    the HTTP API on PROXYOS_API_LISTEN (127.0.0.1:8081)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxyos-worker",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in COMMANDS:
        module.register(commands)
    return parser


def _values_may_start_with_dash(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """ProxyOS ids may start with "-" (nanoid's alphabet): `--route -abc` becomes
    `--route=-abc`, which argparse would otherwise read as an unknown option."""
    takes_value, flags = set(), set()

    def walk(current: argparse.ArgumentParser) -> None:
        for action in current._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._StoreAction) and action.option_strings and action.nargs is None:
                takes_value.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(parser)
    joined, tokens = [], list(argv)
    while tokens:
        token = tokens.pop(0)
        if token in takes_value and tokens and tokens[0].startswith("-") and tokens[0] not in flags:
            token = f"{token}={tokens.pop(0)}"
        joined.append(token)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_values_may_start_with_dash(parser, sys.argv[1:] if argv is None else argv))
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"proxyos-worker: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level_number, settings.log_format)
    try:
        return int(args.handler(args, settings) or 0)
    except config.ConfigError as exc:
        print(f"proxyos-worker: {exc}", file=sys.stderr)
        return 2
    except Problem as exc:  # written for the operator: one line, no traceback
        logging.getLogger("proxyos").error("%s", exc)
        return 1
    except sa.exc.DBAPIError as exc:
        hint = explain(exc, describe_url(settings.database_url))
        if hint is None:
            raise
        logging.getLogger("proxyos").error("%s", hint)
        return 1
    except OSError as exc:  # the file system said no: a directory missing, full, read-only
        where = f" {exc.filename}" if exc.filename else ""
        logging.getLogger("proxyos").error("cannot use%s: %s", where, exc.strerror or exc)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_redis_error(exc):
            raise
        logging.getLogger("proxyos").error("cannot reach the queue at %s: %s", settings.queue.describe(), exc)
        return 1


def _is_redis_error(exc: Exception) -> bool:
    try:
        import redis  # an optional dependency: only a Redis queue needs it
    except ImportError:
        return False
    return isinstance(exc, redis.exceptions.RedisError)


if __name__ == "__main__":
    sys.exit(main())
