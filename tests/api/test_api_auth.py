"""Authentication and scopes exactly as ProxyOS has them: HMAC-SHA256 keys and legacy
SHA-256 ones (upgraded in place), expiry, last_used at most once a minute, each job's
scope, and failed attempts from one address slowed down (429 with Retry-After)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from tests.toolkit.databases import scalar
from tests.toolkit.factories import add_route
from workers.api.auth import hmac_hash

from .toolkit import ApiServer, add_api_key


def _key(shared, scopes, **kw):
    _server, engine, env = shared
    return add_api_key(engine, env["PROXYOS_SECRET"], scopes, **kw)


@pytest.mark.parametrize("scopes, job, status", [
    (["routes:write"], "health", 202),
    (["routes:write"], "issue", 403),
    (["routes:write"], "backup", 403),
    (["certs:write"], "issue", 202),
    (["certs:write"], "certs", 202),
    (["certs:write"], "health", 403),
    (["certs:write"], "prune", 403),
    (["admin"], "backup", 202),
    (["admin"], "health", 202),
    (["admin"], "issue", 202),
    (["admin"], "ingest", 202),
    (["read", "health:read", "routes:read", "certs:read", "analytics:read", "routes", "agents", "connections"],
     "health", 403),
])
def test_each_job_needs_its_scope(shared, scopes, job, status):
    server = shared[0]
    _, key = _key(shared, scopes)
    answer = server.call("POST", f"/v1/jobs/{job}", key, {"domain": "a.example.test"} if job == "issue" else None)
    assert answer.status == status, answer.body
    if status == 403:
        assert "lacks scope" in answer.body["error"]


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/status", "/metrics"])
def test_reading_needs_a_key_with_any_scope(shared, path):
    server = shared[0]
    assert server.call("GET", path, _key(shared, ["read"])[1]).status == 200
    assert server.call("GET", path, _key(shared, ["health:read"])[1]).status == 200
    none = server.call("GET", path, _key(shared, [])[1])
    assert none.status == 403 and "lacks a scope" in none.body["error"]
    assert server.call("GET", path).status == 401


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Bearer pxos_", "Bearer pxos_wrong", "bearer {key}", "Basic {key}",
    "Bearer {key}x", "Bearer  {key}", "Token {key}", "Bearer {legacy_hash}",
])
def test_a_missing_or_wrong_key_is_401(shared, header):
    server, engine, env = shared
    _, key = _key(shared, ["admin"])
    headers = {} if header is None else {"Authorization": header.format(key=key, legacy_hash=hmac_hash("x", key))}
    answer = server.call("POST", "/v1/jobs/backup", headers=headers)
    assert answer.status == 401, answer.body
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "API key" in answer.body["error"] and key not in answer.body["error"]


def test_a_key_of_another_secret_is_401(shared):
    server, engine, _env = shared
    _, key = add_api_key(engine, "another-dashboard-secret", ["admin"])
    assert server.call("GET", "/v1/jobs", key).status == 401


def test_expiry_is_honoured(shared):
    server = shared[0]
    now = int(time.time())
    _, expired = _key(shared, ["admin"], expires_at=now - 1)
    _, expiring_now = _key(shared, ["admin"], expires_at=now)
    _, valid = _key(shared, ["admin"], expires_at=now + 3600)
    assert server.call("GET", "/v1/jobs", expired).status == 401
    assert server.call("GET", "/v1/jobs", expiring_now).status == 401
    assert server.call("GET", "/v1/jobs", valid).status == 200


def test_a_legacy_sha256_key_is_accepted_and_upgraded_to_the_hmac(shared):
    server, engine, env = shared
    key_id, key = _key(shared, ["routes:write"], legacy=True)
    assert server.call("POST", "/v1/jobs/health", key, {"route": add_route(engine)}).status == 202
    stored = scalar(engine, "SELECT key_hash FROM api_keys WHERE id = :i", i=key_id)
    assert stored == hmac_hash(env["PROXYOS_SECRET"], key)
    assert scalar(engine, "SELECT last_used FROM api_keys WHERE id = :i", i=key_id) is not None
    assert server.call("GET", "/v1/jobs", key).status == 200  # and still accepted


def test_last_used_is_written_at_most_once_a_minute(shared):
    server, engine, _env = shared
    key_id, key = _key(shared, ["read"])
    assert server.call("GET", "/v1/jobs", key).status == 200
    first = scalar(engine, "SELECT last_used FROM api_keys WHERE id = :i", i=key_id)
    assert first is not None and abs(first - time.time()) < 5

    def set_last_used(value: int) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE api_keys SET last_used = :v WHERE id = :i"), {"v": value, "i": key_id})

    recent = int(time.time()) - 30  # within the minute: not written again
    set_last_used(recent)
    assert server.call("GET", "/v1/jobs", key).status == 200
    assert scalar(engine, "SELECT last_used FROM api_keys WHERE id = :i", i=key_id) == recent
    set_last_used(int(time.time()) - 3600)  # but the row says an hour ago, and this process wrote it
    assert server.call("GET", "/v1/jobs", key).status == 200  # within its minute: still not written
    assert scalar(engine, "SELECT last_used FROM api_keys WHERE id = :i", i=key_id) < time.time() - 3000


def test_a_deleted_key_is_refused_at_once(shared):
    server, engine, _env = shared
    key_id, key = _key(shared, ["admin"])
    assert server.call("GET", "/v1/jobs", key).status == 200
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM api_keys WHERE id = :i"), {"i": key_id})
    assert server.call("GET", "/v1/jobs", key).status == 401


def test_repeated_failures_from_one_address_get_429_with_retry_after(sqlite_api_env, tmp_path):
    env = dict(sqlite_api_env, PROXYOS_API_AUTH_FAILURES="3", PROXYOS_API_AUTH_WINDOW="600")
    server = ApiServer(env, tmp_path / "serve.log")
    try:
        from db.engine import create_engine

        engine = create_engine(env["PROXYOS_DATABASE_URL"])
        _, key = add_api_key(engine, env["PROXYOS_SECRET"], ["admin"])
        engine.dispose()
        assert server.call("GET", "/v1/jobs", key).status == 200
        for _ in range(3):
            assert server.call("GET", "/v1/jobs", "pxos_guess").status == 401
        slowed = server.call("GET", "/v1/jobs", "pxos_guess")
        assert slowed.status == 429 and "too many failed" in slowed.body["error"]
        assert 1 <= int(slowed.headers["Retry-After"]) <= 600
        assert server.call("GET", "/v1/jobs", key).status == 429  # a right key too, while it waits
        assert server.call("POST", "/v1/jobs/backup", key).status == 429
        assert server.call("GET", "/healthz").status == 200  # needs no key: never slowed down
    finally:
        assert server.stop() == 0, server.log()
