"""What one may read: `GET /v1/runs/{task_id}`, `GET /v1/status`, `GET /healthz`, and
`GET /metrics` (served by workers.api.metrics)."""

from __future__ import annotations

import asyncio
import json
import logging

import sqlalchemy as sa
from aiohttp import web

from db.schema import audit_log, task_runs
from tasks.redaction import redact
from workers.registry import JobContext
from workers.status_report import report

from . import audit
from .app_keys import API_SETTINGS, ENGINE, QUEUE, SETTINGS
from .errors import fail, json_response
from .guard import authenticate

log = logging.getLogger("proxyos.api")
routes = web.RouteTableDef()
MAX_TASK_ID = 64


def _summary(raw: str | None) -> object:
    try:
        return json.loads(redact(raw)) if raw else None
    except ValueError:
        return None


def _runs(engine: sa.Engine, task_id: str) -> dict | None:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(task_runs).where(task_runs.c.task_id == task_id).order_by(task_runs.c.started_at)
        ).mappings().all()
        asked = None if rows else conn.execute(
            sa.select(audit_log.c.resource_name).where(
                audit_log.c.action == audit.ACTION, audit_log.c.resource_id == task_id).limit(1)
        ).scalar()
    if not rows and asked is None:
        return None
    runs = [
        {"id": r["id"], "job": r["job"], "status": r["status"], "started_at": r["started_at"],
         "finished_at": r["finished_at"], "duration_ms": r["duration_ms"],
         "error": redact(r["error"]) if r["error"] else None, "summary": _summary(r["summary"]), "host": r["host"]}
        for r in rows
    ]
    return {"task_id": task_id, "job": runs[-1]["job"] if runs else asked,
            "state": runs[-1]["status"] if runs else "queued", "runs": runs}


@routes.get("/v1/runs/{task_id}")
async def runs(request: web.Request) -> web.Response:
    await authenticate(request, None)
    task_id = request.match_info["task_id"]
    found = None
    if len(task_id) <= MAX_TASK_ID and task_id.isprintable():
        found = await asyncio.to_thread(_runs, request.app[ENGINE], task_id)
    if found is None:
        fail(404, f"no task {task_id[:MAX_TASK_ID]!r} is known: neither enqueued through this API "
             "nor recorded in task_runs")
    return json_response(found)


@routes.get("/v1/status")
async def status(request: web.Request) -> web.Response:
    await authenticate(request, None)
    app = request.app
    ctx = JobContext(app[SETTINGS], engine=app[ENGINE])  # not closed: the engine is the app's
    return json_response(await asyncio.to_thread(report, ctx, app[ENGINE], app[QUEUE]))


def _database_answers(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError as exc:
        log.warning("healthz: the database does not answer: %s", type(exc).__name__)
        return False


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    if await asyncio.to_thread(_database_answers, request.app[ENGINE]):
        return json_response({"status": "ok", "database": "ok"})
    return json_response({"status": "error", "database": "not answering"}, 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.StreamResponse:
    if not request.app[API_SETTINGS].metrics_public:
        await authenticate(request, None)
    from .metrics import metrics_endpoint  # written beside this API (the metrics work), imported when used

    return await metrics_endpoint(request)
