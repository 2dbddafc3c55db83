"""The typed keys under which `proxyos-worker serve` keeps its shared objects on the app.

Handlers read them as `request.app[ENGINE]`, `request.app[SETTINGS]`, `request.app[QUEUE]`:
the SQLAlchemy engine from `db.engine`, the checked `workers.config.Settings`, and the
`workers.queue.JobQueue` that enqueues onto the configured Huey storage.
"""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from workers.config import Settings
from workers.queue import JobQueue

ENGINE: web.AppKey[sa.Engine] = web.AppKey("engine", sa.Engine)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
QUEUE: web.AppKey[JobQueue] = web.AppKey("queue", JobQueue)
