"""Idempotency-Key: the first answer again, nothing enqueued, for 24 hours, whichever API
process answers and across restarts; per API key; another request with it is 422."""

from __future__ import annotations

import time

import sqlalchemy as sa

from tests.toolkit.databases import scalar

from .toolkit import ApiServer, add_api_key


def _pending(server: ApiServer, key: str) -> int:
    return server.call("GET", "/v1/status", key).body["queue"]["pending"]


def test_a_repeated_key_gets_the_first_answer_and_enqueues_nothing(api_env, db, tmp_path):
    first = ApiServer(api_env, tmp_path / "first.log")
    second = ApiServer(api_env, tmp_path / "second.log")  # another API process on the same database
    try:
        _, key = add_api_key(db, api_env["PROXYOS_SECRET"], ["admin"])
        headers = {"Idempotency-Key": "backup-2026-11-30"}
        answer = first.call("POST", "/v1/jobs/backup", key, headers=headers)
        assert answer.status == 202 and "Idempotent-Replayed" not in answer.headers
        again = second.call("POST", "/v1/jobs/backup", key, headers=headers)
        assert again.status == 202 and again.body == answer.body
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Location"] == answer.headers["Location"]
        assert _pending(first, key) == 1
        assert scalar(db, "SELECT count(*) FROM audit_log") == 1

        other = first.call("POST", "/v1/jobs/prune", key, headers=headers)
        assert other.status == 422 and "Idempotency-Key" in other.body["error"]
        fresh = first.call("POST", "/v1/jobs/backup", key, headers={"Idempotency-Key": "backup-2026-12-01"})
        assert fresh.status == 202 and fresh.body["task_id"] != answer.body["task_id"]
        _, other_key = add_api_key(db, api_env["PROXYOS_SECRET"], ["admin"])  # keys are per API key
        theirs = first.call("POST", "/v1/jobs/backup", other_key, headers=headers)
        assert theirs.status == 202 and theirs.body["task_id"] not in (answer.body["task_id"], fresh.body["task_id"])
        assert _pending(first, key) == 3
    finally:
        assert first.stop() == 0, first.log()
    restarted = ApiServer(api_env, tmp_path / "restarted.log")
    try:
        after = restarted.call("POST", "/v1/jobs/backup", key, headers=headers)
        assert after.status == 202 and after.body == answer.body
        assert _pending(restarted, key) == 3
    finally:
        assert restarted.stop() == 0
        assert second.stop() == 0


def test_an_answer_older_than_24_hours_is_forgotten(sqlite_api_env, tmp_path):
    server = ApiServer(sqlite_api_env, tmp_path / "serve.log")
    from db.engine import create_engine

    engine = create_engine(sqlite_api_env["PROXYOS_DATABASE_URL"])
    try:
        _, key = add_api_key(engine, sqlite_api_env["PROXYOS_SECRET"], ["admin"])
        headers = {"Idempotency-Key": "k1"}
        answer = server.call("POST", "/v1/jobs/backup", key, headers=headers)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE api_idempotency SET created_at = :t"), {"t": int(time.time()) - 86_401})
        later = server.call("POST", "/v1/jobs/backup", key, headers=headers)
        assert later.status == 202 and later.body["task_id"] != answer.body["task_id"]
        assert "Idempotent-Replayed" not in later.headers
        assert scalar(engine, "SELECT count(*) FROM audit_log") == 2
    finally:
        engine.dispose()
        assert server.stop() == 0


def test_concurrent_requests_with_one_key_enqueue_once(sqlite_api_env, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from db.engine import create_engine

    server = ApiServer(sqlite_api_env, tmp_path / "serve.log")
    engine = create_engine(sqlite_api_env["PROXYOS_DATABASE_URL"])
    try:
        _, key = add_api_key(engine, sqlite_api_env["PROXYOS_SECRET"], ["admin"])
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: server.call("POST", "/v1/jobs/backup", key,
                                                          headers={"Idempotency-Key": "same"}), range(32)))
        assert {a.status for a in answers} == {202}
        assert len({a.body["task_id"] for a in answers}) == 1
        assert _pending(server, key) == 1
        assert scalar(engine, "SELECT count(*) FROM audit_log") == 1
    finally:
        engine.dispose()
        assert server.stop() == 0
