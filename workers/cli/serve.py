"""`proxyos-worker serve`: the HTTP API (workers/api)."""

from __future__ import annotations

import gc
import logging

from ..consumer import build_queue
from ..startup import open_database
from .common import add_command

log = logging.getLogger("proxyos.api")

DESCRIPTION = """\
Serve the workers' HTTP API on PROXYOS_API_LISTEN (default 127.0.0.1:8081), on the same
database and queue as the other commands (PROXYOS_DATABASE_URL, PROXYOS_QUEUE_URL); pending
migrations are applied first. Run as many as you like, anywhere the database and queue
are reachable: what must hold across them (Idempotency-Key answers) is in the database.

  POST /v1/jobs/JOB        enqueue a job; JSON body of its options, as `enqueue` takes
                           them ({"route": "ID"}); 202 with the task id and a link to
                           its runs. Idempotency-Key: the first answer again for 24 h.
  GET  /v1/runs/TASK_ID    that task's runs (status, times, summary, error)
  GET  /v1/jobs            every job's schedule, last and next run; what one may enqueue
  GET  /v1/status          what `status --json` prints
  GET  /healthz            up, and the database answers (no key needed)
  GET  /metrics            Prometheus metrics (a key, unless PROXYOS_METRICS_PUBLIC=1)

Every request but /healthz needs `Authorization: Bearer pxos_...`, an API key made in
the ProxyOS dashboard (Settings > API keys); PROXYOS_SECRET must be the dashboard's.
Scopes: reading needs any scope; enqueueing `issue` or `certs` needs certs:write,
`health` needs routes:write, any other job admin; admin allows everything. Every
accepted job is written to ProxyOS's audit_log (actor api_key:NAME). After
PROXYOS_API_AUTH_FAILURES (10) failed authentications from one address within
PROXYOS_API_AUTH_WINDOW (60) seconds, its requests get 429 with Retry-After.
Stop it with SIGTERM or Ctrl-C."""


def register(commands) -> None:
    parser = add_command(
        commands,
        "serve",
        help="the HTTP API: enqueue jobs, read their runs and the status",
        description=DESCRIPTION,
        example="PROXYOS_API_LISTEN=0.0.0.0:8081 proxyos-worker serve\n"
        "curl -X POST -H \"Authorization: Bearer $KEY\" -d '{\"route\": \"ID\"}' "
        "http://127.0.0.1:8081/v1/jobs/health",
    )
    parser.set_defaults(handler=handle)


def handle(args, settings) -> int:
    from aiohttp import web  # imported when used: keeps the other commands quick

    from ..api import settings as api_settings
    from ..api.app import build_app

    api = api_settings.load(settings.env)
    engine = open_database(settings)
    queue, ctx = build_queue(settings)
    try:
        app = build_app(settings, api, engine, queue)
        # The start-up heap (modules, the app) is never garbage: take it out of the cyclic
        # collector's sight, which a scrape (some 10^5 short-lived objects) would otherwise
        # make walk it again and again.
        gc.collect()
        gc.freeze()
        access = logging.getLogger("proxyos.api.access") if settings.log_level == "debug" else None
        log.info("API listening on http://%s:%d", f"[{api.host}]" if ":" in api.host else api.host, api.port)
        web.run_app(app, host=api.host, port=api.port, print=None, access_log=access,
                    shutdown_timeout=settings.shutdown_timeout_s)
    finally:
        ctx.close()
        engine.dispose()
    log.info("API stopped")
    return 0
