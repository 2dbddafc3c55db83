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

from .auth import KeyStore
from .job_requests import Acceptor
from .settings import ApiSettings
from .throttle import FailureThrottle

ENGINE: web.AppKey[sa.Engine] = web.AppKey("engine", sa.Engine)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
QUEUE: web.AppKey[JobQueue] = web.AppKey("queue", JobQueue)

# The API's own (see workers/api/app.py): its settings, the API keys, the failure
# throttle, what accepts job requests.
API_SETTINGS: web.AppKey[ApiSettings] = web.AppKey("api_settings", ApiSettings)
KEYS: web.AppKey[KeyStore] = web.AppKey("keys", KeyStore)
THROTTLE: web.AppKey[FailureThrottle] = web.AppKey("throttle", FailureThrottle)
ACCEPTOR: web.AppKey[Acceptor] = web.AppKey("acceptor", Acceptor)
