"""A minimal exporter for the Prometheus test: an aiohttp app with `GET /metrics` only,
on the engine and settings `proxyos-worker serve` would give it (from the environment).

    python -m tests.metrics.exporter PORT
"""

from __future__ import annotations

import sys

from aiohttp import web

from db.engine import create_engine
from workers.api.app_keys import ENGINE, SETTINGS
from workers.api.metrics import metrics_endpoint
from workers.config import load


def main() -> None:
    settings = load()
    app = web.Application()
    app[SETTINGS] = settings
    app[ENGINE] = create_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms)
    app.router.add_get("/metrics", metrics_endpoint)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
