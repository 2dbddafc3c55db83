"""A job asked for over HTTP runs: `health` for a route with a real upstream, enqueued
with a key made as ProxyOS makes one, run by a consumer, its runs read back `ok`, the
request in `audit_log`; on SQLite, then on PostgreSQL + Redis."""

from __future__ import annotations

import json

import sqlalchemy as sa

from tests.toolkit.factories import add_route
from tests.toolkit.processes import Consumer, wait_until

from .toolkit import ApiServer, add_api_key


def _audit(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT action, resource_type, resource_id, resource_name, actor, detail, "
                                    "created_at FROM audit_log")).all()


def test_health_enqueued_over_http_runs_and_is_audited(api_env, db, upstream, tmp_path):
    server = ApiServer(api_env, tmp_path / "serve.log")
    consumer = None
    try:
        route = add_route(db, upstreams=[{"address": upstream.address}])
        key_id, key = add_api_key(db, api_env["PROXYOS_SECRET"], ["routes:write"], name="ci")
        answer = server.call("POST", "/v1/jobs/health", key, {"route": route})
        assert answer.status == 202, answer.body
        task_id = answer.body["task_id"]
        assert answer.body["runs"] == answer.headers["Location"] == f"/v1/runs/{task_id}"
        queued = server.call("GET", f"/v1/runs/{task_id}", key)
        assert queued.status == 200 and queued.body["state"] == "queued" and queued.body["runs"] == []

        consumer = Consumer(api_env, tmp_path / "worker.log", "--no-periodic")
        done = wait_until(lambda: (a := server.call("GET", f"/v1/runs/{task_id}", key)).body.get("state") == "ok"
                          and a, what="the health run to be ok")
        run = done.body["runs"][-1]
        assert done.body["job"] == "health" and run["status"] == "ok" and run["error"] is None
        assert run["finished_at"] >= run["started_at"] and run["summary"]["checked"] == 1
        with db.connect() as conn:
            checks = conn.execute(sa.text("SELECT overall_status FROM health_checks WHERE route_id = :r"),
                                  {"r": route}).scalars().all()
            last_used = conn.execute(sa.text("SELECT last_used FROM api_keys WHERE id = :k"), {"k": key_id}).scalar()
        assert checks == ["healthy"]
        assert upstream.seen  # the check reached the upstream
        assert last_used is not None
        [(action, kind, resource_id, name, actor, detail, created_at)] = _audit(db)
        assert (action, kind, resource_id, name, actor) == ("job.enqueue", "job", task_id, "health", "api_key:ci")
        assert json.loads(detail)["options"] == {"route": route} and json.loads(detail)["api_key_id"] == key_id
        assert isinstance(created_at, int)
    finally:
        if consumer:
            assert consumer.stop() == 0, consumer.log()
        assert server.stop() == 0, server.log()
    assert key not in server.log() and api_env["PROXYOS_SECRET"] not in server.log()
