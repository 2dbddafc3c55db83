"""`proxyos-worker run [--workers N] [--no-periodic]`."""

from __future__ import annotations

from .. import consumer
from .common import add_command


def register(commands) -> None:
    parser = add_command(
        commands,
        "run",
        help="run the consumer (and the periodic scheduler)",
        description="Apply pending migrations, then consume the queue with N worker threads "
        "and enqueue periodic jobs on their schedule. Any number of `run` processes may "
        "share one database and queue: each periodic tick is enqueued once in all. "
        "SIGTERM or SIGINT stop gracefully: no new task starts, running ones get "
        "PROXYOS_SHUTDOWN_TIMEOUT seconds (default 30) to finish; a second signal stops at once. "
        "Only the jobs PROXYOS_JOBS enables are scheduled and run (default all); a message for "
        "another is recorded as skipped.",
        example="proxyos-worker run --workers 8\nproxyos-worker run --no-periodic   # an extra consumer",
    )
    parser.add_argument("--workers", type=int, default=4, metavar="N", help="worker threads (default 4)")
    parser.add_argument("--no-periodic", action="store_true", help="consume only; do not enqueue periodic jobs")
    parser.set_defaults(handler=handle)


def handle(args, settings) -> int:
    if args.workers < 1:
        raise SystemExit("proxyos-worker run: --workers must be at least 1")
    consumer.run(settings, workers=args.workers, periodic=not args.no_periodic)
    return 0
