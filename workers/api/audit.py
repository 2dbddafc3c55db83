"""The `audit_log` row of each accepted request, in ProxyOS's columns and conventions
(a dotted verb, the resource, an actor, JSON detail, seconds): the actor names the API key
(`api_key:NAME`), the detail gives its id, the options and the client's address."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Connection

from db.sql import driver_mark, new_id

ACTION = "job.enqueue"


def actor(key_name: str) -> str:
    return f"api_key:{key_name}"


def record_enqueue(conn: Connection, *, key_id: str, key_name: str, job: str, task_id: str,
                   options: dict[str, Any], client: str | None, idempotency_key: str | None, now: int) -> str:
    """Insert the row (in the caller's transaction); its id."""
    row_id = new_id()
    detail = {"api_key_id": key_id, "options": options, "client": client}
    if idempotency_key is not None:
        detail["idempotency_key"] = idempotency_key
    mark = driver_mark(conn)  # the driver's own parameters: this runs on every request
    conn.exec_driver_sql(
        f"INSERT INTO audit_log (id, action, resource_type, resource_id, resource_name, actor, detail, created_at) "
        f"VALUES ({', '.join([mark] * 8)})",
        (row_id, ACTION, "job", task_id, job, actor(key_name), json.dumps(detail, sort_keys=True), now))
    return row_id
