"""A job asked for over HTTP: its body read as the options `proxyos-worker enqueue` takes
(same names, same checks), then accepted: the audit row, the Idempotency-Key's first
answer and the queue message go together, in one short write transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from workers.queue import ON_DEMAND, JobQueue
from workers.registry import Job

from . import audit, idempotency
from .auth import ApiKey
from .errors import ApiError, fail

MAX_VALUE_LENGTH = 253  # an id or a domain name; values travel in queue messages
PRUNE_EVERY_S = 60.0


def visible_jobs(jobs: Mapping[str, Job]) -> dict[str, Job]:
    """The jobs one may ask for: those `enqueue` offers (internal fan-out tasks are not)."""
    return {name: job for name, job in jobs.items() if not job.hidden}


def find_job(jobs: Mapping[str, Job], name: str) -> Job:
    job = visible_jobs(jobs).get(name)
    if job is None:
        fail(404, f"no job named {name[:60]!r}; jobs: {', '.join(sorted(visible_jobs(jobs)))}")
    return job


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of options; an empty body is no options."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        fail(400, "the body must be a JSON object of the job's options, e.g. {\"route\": \"ID\"}")
    if not isinstance(body, dict):
        fail(400, f"the body must be a JSON object of the job's options, not a JSON {type(body).__name__}")
    return body


def _takes(job: Job) -> str:
    return ", ".join(o.dest for o in job.options) or "no options"


def options_for(job: Job, body: Mapping[str, Any]) -> dict[str, Any]:
    """The options, checked as the command line checks them; a null value is left out."""
    allowed = {option.dest: option for option in job.options}
    options = {}
    for name, value in body.items():
        option = allowed.get(name)
        if option is None:
            fail(400, f"{job.name} takes no option {name[:60]!r} (it takes: {_takes(job)})")
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_VALUE_LENGTH or not value.isprintable():
            fail(400, f"option {name!r} of {job.name} must be a string of 1 to {MAX_VALUE_LENGTH} printable characters")
        try:
            options[name] = option.type(value)
        except (TypeError, ValueError):
            fail(400, f"option {name!r} of {job.name} is not valid: expected {option.metavar or 'a value'}")
    return options


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


class Acceptor:
    """Accepts job requests into `queue`, recording them in `engine`'s database."""

    def __init__(self, engine: Engine, queue: JobQueue) -> None:
        self._engine = engine
        self._queue = queue
        self._pruned_at = 0.0

    def accept(self, key: ApiKey, job: Job, options: dict[str, Any], idempotency_key: str | None,
               client: str | None, conn: Connection | None = None) -> Answer:
        """Blocking (run it in a thread); on `conn` when given (no transaction open on it)."""
        now = time.time()
        task = self._queue.message(job.name, **{ON_DEMAND: True}, **options)
        body = {"task_id": task.id, "job": job.name, "runs": f"/v1/runs/{task.id}"}
        with write_transaction(self._engine, conn) as conn:
            if idempotency_key is not None:
                stored = idempotency.claim(
                    conn, idempotency.record_id(key.id, idempotency_key), key.id,
                    idempotency.request_hash(job.name, options), 202, body, int(now))
                if stored is not None:
                    if not stored.same_request:
                        raise ApiError(422, "this Idempotency-Key was used in the last 24 hours for "
                                       "another request; use a new key for a new request")
                    return Answer(stored.status, stored.body, replayed=True)
            audit.record_enqueue(conn, key_id=key.id, key_name=key.name, job=job.name, task_id=task.id,
                                 options=options, client=client, idempotency_key=idempotency_key, now=int(now))
            try:
                self._queue.send(task)  # last: a failure here rolls the rows back
            except Exception as exc:
                raise QueueUnavailable() from exc
        if idempotency_key is not None and now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            with write_transaction(self._engine) as conn:
                idempotency.prune(conn, int(now))
        return Answer(202, body)


class QueueUnavailable(Exception):
    """The queue did not take the message (its storage is down or full)."""
