"""Secret hygiene after a full issuance run through a real consumer (LOG_LEVEL=debug):
the TSIG secret (the DNS credentials), a wrong provider's secret and PROXYOS_SECRET appear
nowhere in the logs, the queue (every byte of the SQLite queue files, or every command
Redis received), the database (every byte of its files, so task_runs, audit_log and every
error column too); private keys and the queue database are mode 0600."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from tests.toolkit.certs import cert_env_for
from tests.toolkit.databases import scalar
from tests.toolkit.factories import add_provider, add_route, new_secret, ups
from tests.toolkit.leaks import FileSnapshots, leaks, needles
from tests.toolkit.processes import Consumer, run_cli, wait_until
from tests.toolkit.servers.redis import fresh_redis_url
from tests.toolkit.snapshots import file_mode

GOOD_DOMAINS = 4


class RedisMonitor:
    """Every command the Redis server receives while the run lasts (MONITOR), so a secret
    in a task message is seen even after a consumer took the message off the queue."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.seen: list[bytes] = []
        self._monitor = self.client.monitor()
        self._monitor.connection.send_command("MONITOR")
        self._monitor.connection.read_response()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        connection = self._monitor.connection
        while not self._stop.is_set():
            try:
                if connection.can_read(timeout=0.2):
                    self.seen.append(connection.read_response(disable_decoding=True))
            except Exception:
                return

    def stop(self) -> bytes:
        self._stop.set()
        self._thread.join(timeout=5)
        keys = b"".join(self.client.dump(key) or b"" for key in self.client.keys("*"))
        self._monitor.connection.disconnect()
        return b"\n".join(bytes(item) for item in self.seen) + keys


@pytest.mark.parametrize("queue", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_no_secret_anywhere_after_an_issuance_run(queue, worker_env, tmp_path, fault_bind, fault_pebble):  # noqa: F811
    secret = new_secret()
    wrong_tsig = base64.b64encode(secrets.token_bytes(32)).decode()
    cert_dir = tmp_path / "certs"
    env = cert_env_for(worker_env, fault_bind, fault_pebble, cert_dir, secret, propagation_timeout=30)
    env.update(LOG_LEVEL="debug", PROXYOS_DNS_PROPAGATION_TIMEOUT="5")
    monitor = None
    snapshots = FileSnapshots(tmp_path, "queue.db*")
    if queue == "redis":
        env["PROXYOS_QUEUE_URL"] = fresh_redis_url(12)
        monitor = RedisMonitor(env["PROXYOS_QUEUE_URL"])
    assert run_cli(["migrate"], env).returncode == 0
    engine = create_engine(env["PROXYOS_DATABASE_URL"])
    good = add_provider(engine, fault_bind.credentials, secret=secret)
    domains = [f"h{secrets.token_hex(4)}.example.test" for _ in range(GOOD_DOMAINS)]
    for domain in domains:
        add_route(engine, domain, good, name=domain, upstreams=ups("127.0.0.1:9"), health_check_enabled=0)
    wrong = add_provider(engine, dict(fault_bind.credentials, tsig_secret=wrong_tsig), name="wrong", secret=secret)
    bad = f"bad{secrets.token_hex(4)}.example.test"
    add_route(engine, bad, wrong, name=bad, upstreams=ups("127.0.0.1:9"), health_check_enabled=0)

    def certificates():
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT domain, status FROM certificates")).all())

    outputs = []
    consumer = Consumer(env, tmp_path / "worker.log", "--workers", "4")  # its start-up runs `certs`
    try:
        settled = wait_until(lambda: (lambda c: len(c) == GOOD_DOMAINS + 1 and all(
            s in ("active", "error") for s in c.values()) and c)(certificates()),
            timeout=120, what="every certificate to be issued or failed")
        # And once more on demand, through a task message. A request in the very second a
        # renewal was recorded in counts as served by it (renewals are stored in whole
        # seconds): make it in a later one, so that it orders a new certificate.
        with engine.connect() as conn:
            cert_id, renewed = conn.execute(sa.text("SELECT id, last_renewed_at FROM certificates WHERE domain = :d"),
                                            {"d": domains[0]}).one()
        wait_until(lambda: time.time() >= renewed + 1, timeout=5, what="the second after the renewal")
        enqueued = run_cli(["enqueue", "issue", "--cert", cert_id], env)
        outputs += [enqueued.stdout, enqueued.stderr]
        assert enqueued.returncode == 0, enqueued.stderr
        wait_until(lambda: scalar(engine, "SELECT count(*) FROM task_runs WHERE task_id = :t AND status = 'ok'",
                                  t=enqueued.stdout.strip()), timeout=60, what="the enqueued issue")
        status = run_cli(["status"], env)
        listing = run_cli(["certs", "--json"], env)
        outputs += [status.stdout, status.stderr, listing.stdout, listing.stderr]
    finally:
        code = consumer.stop()
        queue_bytes = monitor.stop() if monitor else b""
        snapshots.stop()
        engine.dispose()
    assert code == 0
    assert sorted(s for s in settled.values()) == ["active"] * GOOD_DOMAINS + ["error"]
    with create_engine(env["PROXYOS_DATABASE_URL"]).connect() as conn:
        error = conn.execute(sa.text("SELECT last_error FROM certificates WHERE status = 'error'")).scalar()
        issued = conn.execute(sa.text("SELECT count(*) FROM cert_issuance_log")).scalar()
        audit = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar()
    assert error, "the wrong credential left no recorded error"
    assert issued == GOOD_DOMAINS + 1 and audit >= issued  # the run really issued, and said so

    secret_bytes = needles(secret, fault_bind.tsig_secret, wrong_tsig)
    log = consumer.log_path.read_bytes() + "".join(outputs).encode()
    assert b"DEBUG" in log or b"debug" in log, "the consumer did not log at debug level"
    assert not leaks(log, secret_bytes), "a secret is in the logs or the CLI's output"
    database_files = sorted(tmp_path.glob("proxyos.db*"))
    assert database_files
    assert not leaks(b"".join(p.read_bytes() for p in database_files), secret_bytes), \
        "a secret is in the database (task_runs, audit_log, an error column, ...)"
    if queue == "sqlite":
        queue_files = sorted(tmp_path.glob("queue.db*"))
        queue_bytes = snapshots.stop() + b"".join(p.read_bytes() for p in queue_files)
        for path in queue_files:
            assert file_mode(path) == 0o600, path
    else:
        assert cert_id.encode() in queue_bytes  # MONITOR saw the message
    assert not leaks(queue_bytes, secret_bytes), "a secret is in the queue"
    keys = sorted(cert_dir.rglob("privkey.pem"))
    assert len(keys) == GOOD_DOMAINS
    for key in keys:
        assert file_mode(key) == 0o600, key
    assert not [p for p in cert_dir.rglob("*") if p.is_file() and leaks(p.read_bytes(), secret_bytes)]
    assert os.environ.get("PROXYOS_SECRET") != secret
