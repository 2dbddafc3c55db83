"""`issue` asked for over HTTP with a certs:write key: a consumer orders the certificate
from Pebble through BIND 9 (the fixtures of tests/certs), the run reads back `ok`."""

from __future__ import annotations

import sqlalchemy as sa

from db.engine import create_engine
from db.migrate import upgrade
from tasks.certs.sync import sync_certificates
from tests.toolkit.databases import scalar
from tests.toolkit.factories import add_provider, add_route, unique
from tests.toolkit.processes import Consumer, wait_until

from .toolkit import ApiServer, add_api_key


def test_issue_enqueued_over_http_orders_the_certificate(cert_env, bind, tmp_path):
    engine = create_engine(cert_env["PROXYOS_DATABASE_URL"])
    upgrade(engine)
    add_route(engine, unique(), add_provider(engine, bind.credentials))
    sync_certificates(engine, 0)
    cert_id = scalar(engine, "SELECT id FROM certificates")
    server = ApiServer(cert_env, tmp_path / "serve.log")
    consumer = Consumer(cert_env, tmp_path / "worker.log", "--no-periodic")
    try:
        _, key = add_api_key(engine, cert_env["PROXYOS_SECRET"], ["certs:write"], name="certbot")
        assert server.call("POST", "/v1/jobs/health", key).status == 403  # not this key's
        answer = server.call("POST", "/v1/jobs/issue", key, {"cert": cert_id})
        assert answer.status == 202, answer.body
        runs = wait_until(lambda: (a := server.call("GET", answer.body["runs"], key)).body["state"] in ("ok", "error")
                          and a, what="the issue run to end", timeout=120)
        assert runs.body["state"] == "ok", runs.body
        assert scalar(engine, "SELECT status FROM certificates WHERE id = :i", i=cert_id) == "active"
        with engine.connect() as conn:
            audit = conn.execute(sa.text("SELECT resource_name, actor FROM audit_log WHERE resource_id = :t"),
                                 {"t": answer.body["task_id"]}).all()
        assert [tuple(r) for r in audit] == [("issue", "api_key:certbot")]
    finally:
        assert consumer.stop() == 0, consumer.log()
        assert server.stop() == 0, server.log()
        engine.dispose()
    for log in (server.log(), consumer.log()):
        assert bind.tsig_secret not in log and cert_env["PROXYOS_SECRET"] not in log
