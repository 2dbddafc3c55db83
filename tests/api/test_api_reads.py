"""What one reads: /v1/status is `status --json`, /v1/jobs every job's schedule and what
one may enqueue, /healthz up and the database answering, /metrics behind a key unless
PROXYOS_METRICS_PUBLIC=1; no answer carries a secret."""

from __future__ import annotations

import json

import pytest

from db.engine import create_engine
from tests.toolkit.processes import run_cli
from tests.toolkit.servers.postgres import start_postgres

from .toolkit import ApiServer, add_api_key, serve_env


def test_status_is_what_status_json_prints(shared):
    server, engine, env = shared
    _, key = add_api_key(engine, env["PROXYOS_SECRET"], ["read"])
    answer = server.call("GET", "/v1/status", key)
    printed = run_cli(["status", "--json"], env)
    assert printed.returncode == 0, printed.stderr
    cli = json.loads(printed.stdout)
    assert answer.status == 200 and set(answer.body) == set(cli)
    for part in ("database", "schema", "job_selection"):
        assert answer.body[part] == cli[part]
    assert [j["job"] for j in answer.body["jobs"]] == [j["job"] for j in cli["jobs"]]
    assert env["PROXYOS_SECRET"] not in json.dumps(answer.body)


def test_jobs_lists_schedules_and_what_one_may_enqueue(shared):
    server, engine, env = shared
    _, key = add_api_key(engine, env["PROXYOS_SECRET"], ["read"])
    body = server.call("GET", "/v1/jobs", key).body
    periodic = {j["job"]: j for j in body["jobs"]}
    assert periodic["backup"]["every_s"] == 86400 and periodic["backup"]["enabled"] is True
    assert "next_run_at" in periodic["ingest"] and "last_status" in periodic["ingest"]
    enqueue = {j["job"]: j for j in body["enqueue"]}
    assert enqueue["health"]["options"] == ["route", "stream"] and enqueue["health"]["scope"] == "routes:write"
    assert enqueue["issue"]["scope"] == "certs:write" and enqueue["backup"]["scope"] == "admin"
    assert "health-batch" not in enqueue


def test_healthz_says_when_the_database_does_not_answer(tmp_path):
    """On a PostgreSQL server of the test's own, stopped and started again."""
    try:
        postgres = start_postgres()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no PostgreSQL server of the test's own here: {exc}")
    try:
        env = serve_env(tmp_path, postgres.url)
        server = ApiServer(env, tmp_path / "serve.log")
        try:
            assert server.call("GET", "/healthz").body == {"status": "ok", "database": "ok"}
            postgres.stop()
            down = server.call("GET", "/healthz")
            assert down.status == 503 and down.body == {"status": "error", "database": "not answering"}
            postgres.start()
            assert server.call("GET", "/healthz").status == 200  # back without a restart
        finally:
            assert server.stop() == 0, server.log()
    finally:
        postgres.close()
    assert "Traceback" not in server.log()


def test_metrics_needs_a_key_unless_public(sqlite_api_env, tmp_path):
    server = ApiServer(sqlite_api_env, tmp_path / "serve.log")
    try:
        assert server.call("GET", "/metrics").status == 401
        engine = create_engine(sqlite_api_env["PROXYOS_DATABASE_URL"])
        _, key = add_api_key(engine, sqlite_api_env["PROXYOS_SECRET"], ["read"])
        engine.dispose()
        assert server.call("GET", "/metrics", key).status == 200
    finally:
        assert server.stop() == 0
    public = ApiServer(dict(sqlite_api_env, PROXYOS_METRICS_PUBLIC="1"), tmp_path / "public.log")
    try:
        assert public.call("GET", "/metrics").status == 200
    finally:
        assert public.stop() == 0
