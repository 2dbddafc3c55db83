"""`issue` asked for over HTTP with a certs:write key: a consumer orders the certificate
from Pebble through BIND 9 (the fixtures of tests/certs), the run reads back `ok`, the
request is in `audit_log`; on SQLite, then on PostgreSQL + Redis."""

from __future__ import annotations

import json

import sqlalchemy as sa

from tasks.certs.sync import sync_certificates
from tests.toolkit.databases import migrated, scalar
from tests.toolkit.factories import add_provider, add_route, unique
from tests.toolkit.processes import Consumer, wait_until

from .toolkit import ApiServer, add_api_key


def test_issue_enqueued_over_http_orders_the_certificate(cert_api_env, bind, tmp_path):
    env = cert_api_env
    with migrated(env["PROXYOS_DATABASE_URL"]) as engine:
        add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
        sync_certificates(engine, 0)
        cert_id = scalar(engine, "SELECT id FROM certificates WHERE domain = :d", d=domain)
        server = ApiServer(env, tmp_path / "serve.log")
        consumer = None
        try:
            key_id, key = add_api_key(engine, env["PROXYOS_SECRET"], ["certs:write"], name="certbot")
            assert server.call("POST", "/v1/jobs/health", key).status == 403  # not this key's
            answer = server.call("POST", "/v1/jobs/issue", key, {"cert": cert_id})
            assert answer.status == 202, answer.body
            task_id = answer.body["task_id"]
            assert answer.body["runs"] == f"/v1/runs/{task_id}"
            queued = server.call("GET", answer.body["runs"], key)
            assert queued.status == 200 and queued.body["state"] == "queued", queued.body

            consumer = Consumer(env, tmp_path / "worker.log", "--no-periodic")
            done = wait_until(lambda: (a := server.call("GET", answer.body["runs"], key)).body["state"]
                              in ("ok", "error") and a, what="the issue run to end", timeout=120)
            assert done.body["state"] == "ok", done.body
            run = done.body["runs"][-1]
            assert done.body["job"] == "issue" and run["status"] == "ok" and run["error"] is None, done.body
            assert scalar(engine, "SELECT status FROM certificates WHERE id = :i", i=cert_id) == "active"
            assert (tmp_path / "certs" / domain / "fullchain.pem").is_file()
            assert bind.txt(f"_acme-challenge.{domain}") == set()  # the challenge record is gone again
            with engine.connect() as conn:
                audit = conn.execute(sa.text("SELECT action, resource_type, resource_name, actor, detail "
                                             "FROM audit_log WHERE resource_id = :t"), {"t": task_id}).all()
            [(action, kind, name, actor, detail)] = audit
            assert (action, kind, name, actor) == ("job.enqueue", "job", "issue", "api_key:certbot")
            assert json.loads(detail)["options"] == {"cert": cert_id} and json.loads(detail)["api_key_id"] == key_id
        finally:
            if consumer:
                assert consumer.stop() == 0, consumer.log()
            assert server.stop() == 0, server.log()
    for log in (server.log(), consumer.log()):
        assert bind.tsig_secret not in log and env["PROXYOS_SECRET"] not in log and key not in log
