"""The HTTP API's application: its routes, the shared objects on it (workers.api.app_keys),
and one error middleware, so that every answer that is not a success is JSON with a
message, and none carries a secret or a stack trace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from aiohttp import web

from workers.config import Settings
from workers.queue import JobQueue

from . import jobs_routes, read_routes
from .app_keys import ACCEPTOR, API_SETTINGS, ENGINE, KEYS, QUEUE, SETTINGS, THROTTLE
from .auth import KeyStore
from .errors import ApiError, error_response
from .job_requests import Acceptor, QueueUnavailable
from .settings import ApiSettings
from .throttle import FailureThrottle

log = logging.getLogger("proxyos.api")
MAX_BODY = 64 * 1024
THREADS = 8  # the blocking database and queue work of requests runs on these


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, f"the body is larger than {MAX_BODY // 1024} KiB")
    except web.HTTPException as exc:  # aiohttp's own: unknown path (404), wrong method (405), ...
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, exc.reason, headers)
    except QueueUnavailable as exc:
        log.error("the queue did not take a job: %s", type(exc.__cause__).__name__)
        return error_response(503, "the queue cannot be reached; nothing was enqueued, try again")
    except sa.exc.SQLAlchemyError as exc:
        log.error("%s %s: the database failed: %s", request.method, request.path, type(exc).__name__)
        return error_response(503, "the database cannot be reached; try again")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)  # the log is redacted
        return error_response(500, "internal error; see the API's log")


def build_app(settings: Settings, api: ApiSettings, engine: sa.Engine, queue: JobQueue) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[SETTINGS], app[API_SETTINGS], app[ENGINE], app[QUEUE] = settings, api, engine, queue
    app[KEYS] = KeyStore(engine, settings.secret or "")
    app[THROTTLE] = FailureThrottle(api.failures_allowed, api.failure_window_s)
    app[ACCEPTOR] = Acceptor(engine, queue)
    app.add_routes(jobs_routes.routes)
    app.add_routes(read_routes.routes)
    app.cleanup_ctx.append(_threads)
    return app


async def _threads(_app: web.Application) -> AsyncIterator[None]:
    """The threads `asyncio.to_thread` hands blocking work to."""
    pool = ThreadPoolExecutor(THREADS, thread_name_prefix="api")
    asyncio.get_running_loop().set_default_executor(pool)
    yield
    pool.shutdown(wait=True)
