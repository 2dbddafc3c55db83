"""The CLI as a user runs it: run-once issue/certs, enqueue issue, the certs listing."""

from __future__ import annotations

import json

import sqlalchemy as sa

from db.engine import create_engine
from db.migrate import upgrade
from db.schema import task_runs
from tests.toolkit.factories import SECRET, add_provider, add_route, unique
from tests.toolkit.processes import Consumer, run_cli, wait_until


def _db(env):
    engine = create_engine(env["PROXYOS_DATABASE_URL"])
    upgrade(engine)
    return engine


def test_run_once_issue_certs_and_listing(cert_env, bind):
    engine = _db(cert_env)
    provider = add_provider(engine, bind.credentials)
    add_route(engine, domain := unique(), provider)
    add_route(engine, broken := unique(), add_provider(engine, {"nameserver": "127.0.0.1"}, name="half"))
    result = run_cli(["run-once", "issue", "--domain", domain, "--json"], cert_env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["result"] == "issued" and summary["domain"] == domain
    result = run_cli(["run-once", "certs"], cert_env)
    assert result.returncode == 0, result.stderr
    assert f"{broken}: failed" in result.stdout and "lacks credential" in result.stdout
    listing = run_cli(["certs"], cert_env)
    assert listing.returncode == 0
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert " active " in lines[domain] and " error " in lines[broken] and "lacks credential" in lines[broken]
    items = {i["domain"]: i for i in json.loads(run_cli(["certs", "--json"], cert_env).stdout)}
    assert items[domain]["next_renewal_at"] > items[domain]["expires_at"] - 86400 * 700
    status = run_cli(["status", "--json"], cert_env)
    assert status.returncode == 0, status.stderr
    with engine.connect() as conn:
        runs = conn.execute(sa.select(task_runs.c.job, task_runs.c.status, task_runs.c.error,
                                      task_runs.c.summary)).all()
    assert {(r.job, r.status) for r in runs} == {("issue", "ok"), ("certs", "ok")}
    everything = json.dumps([list(map(str, r)) for r in runs]) + result.stdout + result.stderr
    assert bind.tsig_secret not in everything and SECRET not in everything
    engine.dispose()


def test_issue_unknown_domain_and_bad_setting(cert_env):
    result = run_cli(["run-once", "issue", "--domain", "nothing.example.test"], cert_env)
    assert result.returncode == 1 and "no certificate with domain nothing.example.test" in result.stdout
    bad = dict(cert_env, PROXYOS_CERT_KEY_TYPE="dsa")
    result = run_cli(["run-once", "certs"], bad)
    assert result.returncode == 2 and "PROXYOS_CERT_KEY_TYPE" in result.stderr


def test_enqueue_issue_carries_only_the_id(cert_env, bind, tmp_path):
    engine = _db(cert_env)
    add_route(engine, unique(), add_provider(engine, bind.credentials))
    from tasks.certs.sync import sync_certificates

    sync_certificates(engine, 0)
    with engine.connect() as conn:
        cert_id = conn.execute(sa.text("SELECT id FROM certificates")).scalar()
    result = run_cli(["enqueue", "issue", "--cert", cert_id], cert_env)
    assert result.returncode == 0, result.stderr
    # The message may still sit in the write-ahead log: read every file of the queue.
    queue = b"".join(path.read_bytes() for path in tmp_path.glob("queue.db*"))
    assert cert_id.encode() in queue
    assert bind.tsig_secret.encode() not in queue and SECRET.encode() not in queue
    engine.dispose()


def test_consumer_runs_the_enqueued_issue(cert_env, bind, tmp_path):
    """`enqueue issue --cert ID` with a running consumer: the certificate is issued."""
    engine = _db(cert_env)
    add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
    from tasks.certs.sync import sync_certificates

    sync_certificates(engine, 0)
    with engine.connect() as conn:
        cert_id = conn.execute(sa.text("SELECT id FROM certificates")).scalar()
    consumer = Consumer(cert_env, tmp_path / "worker.log", "--no-periodic")
    try:
        assert run_cli(["enqueue", "issue", "--cert", cert_id], cert_env).returncode == 0

        def status():
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT status FROM certificates WHERE id = :i"), {"i": cert_id}).scalar() \
                    == "active"

        wait_until(status, what=f"certificate {cert_id} to be active")
    finally:
        consumer.stop()
    output = consumer.log()
    with engine.connect() as conn:
        runs = conn.execute(sa.select(task_runs.c.job, task_runs.c.status)).all()
    assert ("issue", "ok") in [tuple(r) for r in runs]
    assert bind.tsig_secret not in output and SECRET not in output
    assert domain
    engine.dispose()


def test_a_duplicate_issue_request_orders_one_certificate(cert_env, bind, tmp_path):
    """Two `enqueue issue --cert ID` made before either ran: the second finds the
    certificate issued since it was requested and orders nothing."""
    engine = _db(cert_env)
    add_route(engine, unique(), add_provider(engine, bind.credentials))
    from tasks.certs.sync import sync_certificates

    sync_certificates(engine, 0)
    with engine.connect() as conn:
        cert_id = conn.execute(sa.text("SELECT id FROM certificates")).scalar()
    for _ in range(2):
        assert run_cli(["enqueue", "issue", "--cert", cert_id], cert_env).returncode == 0
    consumer = Consumer(cert_env, tmp_path / "worker.log", "--no-periodic", "--workers", "1")
    try:
        def both_ran():
            with engine.connect() as conn:
                return conn.execute(sa.text(
                    "SELECT count(*) FROM task_runs WHERE job = 'issue' AND status != 'running'")).scalar() == 2

        wait_until(both_ran, timeout=120, what="both issue runs to finish")
    finally:
        consumer.stop()
    with engine.connect() as conn:
        issued = conn.execute(sa.text("SELECT count(*) FROM cert_issuance_log")).scalar()
        summaries = conn.execute(sa.text("SELECT status, summary FROM task_runs WHERE job = 'issue'")).all()
    assert issued == 1
    assert [status for status, _ in summaries] == ["ok", "ok"]
    assert any("done_elsewhere" in summary for _, summary in summaries)
    engine.dispose()
