"""`POST /v1/jobs/{job}` (enqueue one job) and `GET /v1/jobs` (every job: schedule, last
and next run, and what one may enqueue with which scope)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from sqlalchemy.engine import Connection

from workers.job_records import periodic_jobs

from . import idempotency, scopes
from .app_keys import ACCEPTOR, ENGINE, QUEUE, SETTINGS
from .errors import fail, json_response
from .guard import authenticate, authorize, check_throttle, client_address
from .job_requests import Answer, find_job, options_for, parse_body, visible_jobs

routes = web.RouteTableDef()


@routes.post("/v1/jobs/{job}")
async def enqueue(request: web.Request) -> web.Response:
    check_throttle(request)
    raw = await request.read()  # at most 64 KiB (413 beyond)
    app, header = request.app, request.headers.get("Idempotency-Key")
    answer = await asyncio.to_thread(  # one hop to a thread: the key, then the request
        _accept, app, request.match_info["job"], raw, request.headers.get("Authorization"), header,
        client_address(request))
    headers = {"Location": answer.body["runs"]} if "runs" in answer.body else {}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(answer.body, answer.status, headers)


def _accept(app: web.Application, name: str, raw: bytes, authorization: str | None, header: str | None,
            client: str) -> Answer:
    with app[ENGINE].connect() as conn:  # one connection for the key and the request: both run on every request
        return _accept_on(conn, app, name, raw, authorization, header, client)


def _accept_on(conn: Connection, app: web.Application, name: str, raw: bytes, authorization: str | None,
               header: str | None, client: str) -> Answer:
    key = authorize(app, authorization, client, None, conn)
    job = find_job(app[QUEUE].jobs, name)
    needed = scopes.for_job(job.name)
    if not scopes.allows(key.scopes, needed):
        fail(403, f"API key {key.name!r} lacks scope {needed!r} or 'admin', which {job.name} needs")
    options = options_for(job, parse_body(raw))
    if header is not None and (problem := idempotency.check_header(header)):
        fail(400, problem)
    refused = app[SETTINGS].jobs.refusal(job.name)
    if refused:
        fail(409, f"{job.name} is not enqueued: {refused}")
    return app[ACCEPTOR].accept(key, job, options, header, client, conn)


def _jobs(request: web.Request) -> dict:
    queue, settings = request.app[QUEUE], request.app[SETTINGS]
    enabled = {name for name in queue.jobs if settings.jobs.allows(name)}
    with request.app[ENGINE].connect() as conn:
        periodic = periodic_jobs(conn, queue.jobs.values(), enabled, time.time())
    on_demand = [
        {"job": job.name, "help": job.help, "options": [o.dest for o in job.options],
         "scope": scopes.for_job(job.name), "enabled": job.name in enabled}
        for job in visible_jobs(queue.jobs).values()
    ]
    return {"jobs": periodic, "enqueue": on_demand}


@routes.get("/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    await authenticate(request, None)
    return json_response(await asyncio.to_thread(_jobs, request))
