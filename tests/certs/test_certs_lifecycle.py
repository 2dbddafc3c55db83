"""The `certs` sweep against Pebble and BIND 9: renewal by lifetime and by ARI, failures
with back-off, rate-limit hold-back, row leases under races and crashes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa
from cryptography import x509

from db.engine import create_engine, write_transaction
from db.leases import Owner
from db.schema import audit_log, cert_dns_records, cert_issuance_log, certificates, task_runs
from db.sql import new_id
from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import add_provider, add_route, unique
from tests.toolkit.servers.pebble import AriProxy


def _row(engine, domain):
    with engine.connect() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.domain == domain)).one()


def _issued(engine, domain) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(cert_issuance_log)
                            .where(cert_issuance_log.c.domain == domain)).scalar()


def _serial(settings, domain) -> int:
    return x509.load_pem_x509_certificate((settings.cert_dir / domain / "fullchain.pem").read_bytes()).serial_number


def test_sweep_issues_then_renews_in_window_only(engine, settings, bind):
    provider = add_provider(engine, bind.credentials)
    domain = unique()
    add_route(engine, domain, provider)
    summary = run_sweep(engine, settings)
    assert summary["created"] == 1 and summary.get("issued") == 1, summary
    first = _row(engine, domain)
    serial = _serial(settings, domain)
    # Not yet due: nothing happens.
    assert run_sweep(engine, settings)["due"] == 0
    # Move the clock to just before, then just after, a third of the lifetime is left.
    renew_at = first.expires_at - (first.expires_at - first.issued_at) // 3
    assert abs(first.renew_at - renew_at) <= 1
    renew_at = first.renew_at
    assert run_sweep(engine, settings, clock=lambda: renew_at - 60)["due"] == 0
    summary = run_sweep(engine, settings, clock=lambda: renew_at + 60)
    assert summary.get("renewed") == 1, summary
    second = _row(engine, domain)
    assert second.status == "active" and second.last_renewed_at == renew_at + 60
    assert _serial(settings, domain) != serial
    assert _issued(engine, domain) == 2
    with engine.connect() as conn:
        actions = [r.action for r in conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.created_at))]
    assert actions == ["cert.issued", "cert.renewed"]
    assert bind.txt(f"_acme-challenge.{domain}") == set()


def test_ari_window_triggers_renewal_naming_replaced_certificate(engine, settings, bind, pebble):
    proxy = AriProxy(pebble)
    try:
        settings = dataclasses.replace(settings, directory=proxy.directory)
        provider = add_provider(engine, bind.credentials)
        domain = unique()
        add_route(engine, domain, provider)
        future = ("2099-01-01T00:00:00Z", "2099-01-02T00:00:00Z")
        proxy.window = future
        assert run_sweep(engine, settings).get("issued") == 1
        first = _row(engine, domain)
        assert first.ari_cert_id and first.ari_next_check_at is not None
        # A window in the far future: the lifetime rule is replaced by it, no renewal.
        summary = run_sweep(engine, settings)
        assert summary["ari_checked"] == 1 and summary["due"] == 0, summary
        assert proxy.ari_requests == [first.ari_cert_id]
        assert _row(engine, domain).renew_at >= 4070908800
        # The CA moves the window into the past (e.g. a revocation): renew now, naming it.
        proxy.window = ("2020-01-01T00:00:00Z", "2020-01-01T01:00:00Z")
        summary = run_sweep(engine, settings, clock=lambda: time.time() + 7200)
        assert summary.get("renewed") == 1, summary
        assert proxy.new_orders[-1].get("replaces") == first.ari_cert_id
        assert "replaces" not in proxy.new_orders[0]
    finally:
        proxy.stop()


def test_wrong_tsig_secret_recorded_nothing_left_others_proceed(engine, settings, bind, caplog):
    good = add_provider(engine, bind.credentials)
    wrong = dict(bind.credentials, tsig_secret="d3JvbmcgdHNpZyBzZWNyZXQgdmFsdWUgISEhISEhISE=")
    bad = add_provider(engine, wrong, name="bind-wrong")
    bad_domain, good_domain = unique(), unique()
    add_route(engine, bad_domain, bad)
    add_route(engine, good_domain, good)
    before = time.time()
    summary = run_sweep(engine, settings)
    assert summary.get("failed") == 1 and summary.get("issued") == 1, summary
    row = _row(engine, bad_domain)
    assert row.status == "error" and row.failures == 1
    assert "TSIG" in row.last_error and "bind-wrong" in row.last_error
    assert before + 40 <= row.next_attempt_at <= time.time() + 80  # about a minute
    assert wrong["tsig_secret"] not in row.last_error and wrong["tsig_secret"] not in caplog.text
    assert _row(engine, good_domain).status == "active"
    assert not [n for n in bind.zone_txt_names("example.test") if bad_domain in n or good_domain in n]
    # Back-off: not retried before its time, retried after with the next step (~10 min).
    assert run_sweep(engine, settings)["due"] == 0
    later = row.next_attempt_at + 1
    summary = run_sweep(engine, settings, clock=lambda: later)
    assert summary.get("failed") == 1
    again = _row(engine, bad_domain)
    assert again.failures == 2 and later + 400 <= again.next_attempt_at <= later + 800


def test_rate_limit_holds_back_new_certificate(engine, settings, bind):
    provider = add_provider(engine, bind.credentials)
    domain = unique()
    add_route(engine, domain, provider)
    now = int(time.time())
    with write_transaction(engine) as conn:
        for i in range(50):
            conn.execute(cert_issuance_log.insert().values(
                id=new_id(), domain=f"n{i}.example.test", registered_domain="example.test",
                provider="custom", method="dns01", issued_at=now - 3600 - i))
    summary = run_sweep(engine, settings)
    assert summary.get("held") == 1, summary
    row = _row(engine, domain)
    assert row.status == "provisioning" and "held back" in row.last_error and "example.test" in row.last_error
    assert row.next_attempt_at == now - 3600 - 49 + 7 * 86400
    assert _issued(engine, domain) == 0


def test_expired_certificate_is_marked_and_renewed(engine, settings, bind):
    provider = add_provider(engine, bind.credentials)
    domain = unique()
    add_route(engine, domain, provider)
    assert run_sweep(engine, settings).get("issued") == 1
    row = _row(engine, domain)
    after = row.expires_at + 10
    summary = run_sweep(engine, settings, clock=lambda: after)
    assert summary["expired"] == 1 and summary.get("renewed") == 1, summary
    assert _row(engine, domain).status == "active"


def test_two_consumers_racing_order_once(sqlite_url, engine, settings, bind):
    provider = add_provider(engine, bind.credentials)
    domain = unique()
    add_route(engine, domain, provider)
    barrier = threading.Barrier(2)
    results = []

    def consumer():
        own = create_engine(sqlite_url)
        barrier.wait()
        results.append(run_sweep(own, settings))
        own.dispose()

    threads = [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _issued(engine, domain) == 1
    assert sum(r.get("issued", 0) for r in results) == 1, results
    assert _row(engine, domain).lease_owner is None


def test_worker_killed_mid_order_is_finished_once_after_restart(engine, settings, bind, cert_env, sqlite_url):
    provider = add_provider(engine, bind.credentials)
    domain = unique()
    add_route(engine, domain, provider)
    # A nameserver that never answers: the worker publishes, then waits on propagation.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.settimeout(60)
    env = dict(cert_env, PROXYOS_DNS_NAMESERVER_PORT=str(silent.getsockname()[1]),
               PROXYOS_CERT_LEASE_SECONDS="600")
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "run-once", "issue", "--domain", domain],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        silent.recvfrom(4096)  # the worker is mid-order: TXT published, checking propagation
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        silent.close()
    row = _row(engine, domain)
    assert row.lease_owner and row.lease_expires_at > time.time()
    with engine.connect() as conn:
        assert len(conn.execute(sa.select(cert_dns_records)).all()) == 1
    assert bind.txt(f"_acme-challenge.{domain}")  # left behind by the killed worker
    # Held by the same dead process seen as another host's, the lease is left alone
    # until it expires: that host's processes cannot be probed from here.
    killed = Owner.parse(row.lease_owner)
    assert killed is not None and killed.host == socket.gethostname()
    as_other_host = str(dataclasses.replace(killed, host="otherhost"))
    with write_transaction(engine) as conn:
        conn.execute(certificates.update().where(certificates.c.domain == domain).values(lease_owner=as_other_host))
    assert run_sweep(engine, settings).get("busy", 0) + run_sweep(engine, settings)["due"] == 0
    assert bind.txt(f"_acme-challenge.{domain}")
    assert _row(engine, domain).lease_owner == as_other_host
    # Held by this host's killed process, a restart takes it over at once (no waiting
    # for the expiry) and finishes the job once.
    with write_transaction(engine) as conn:
        conn.execute(certificates.update().where(certificates.c.domain == domain).values(lease_owner=str(killed)))
    summary = run_sweep(engine, settings)
    assert summary.get("issued") == 1 and summary["leftover_txt_removed"] == 1, summary
    assert run_sweep(engine, settings)["due"] == 0
    assert _issued(engine, domain) == 1
    assert bind.txt(f"_acme-challenge.{domain}") == set()
    with engine.connect() as conn:
        assert conn.execute(sa.select(cert_dns_records)).all() == []
        runs = conn.execute(sa.select(task_runs.c.status)).all()
    assert [r.status for r in runs] == ["running"]  # the killed run, never finished


@pytest.mark.parametrize("key_type", ["rsa"])
def test_rsa_key_type(engine, settings, bind, key_type):
    settings = dataclasses.replace(settings, key_type=key_type)
    add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
    assert run_sweep(engine, settings).get("issued") == 1
    key = (settings.cert_dir / domain / "privkey.pem").read_bytes()
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    assert load_pem_private_key(key, None).key_size == 2048


def test_deploy_hook_runs_and_its_failure_keeps_certificate(engine, settings, bind, tmp_path):
    out = tmp_path / "hook.out"
    hook = f'echo "$PROXYOS_CERT_DOMAIN $PROXYOS_CERT_FULLCHAIN $PROXYOS_CERT_KEY ${{PROXYOS_SECRET:-none}}" >> {out}'
    settings = dataclasses.replace(settings, deploy_hook=hook)
    provider = add_provider(engine, bind.credentials)
    add_route(engine, domain := unique(), provider)
    assert run_sweep(engine, settings).get("issued") == 1
    words = out.read_text().split()
    assert words[0] == domain and words[1].endswith("fullchain.pem") and words[2].endswith("privkey.pem")
    assert words[3] == "none"
    failing = dataclasses.replace(settings, deploy_hook="echo reload refused >&2; exit 3")
    add_route(engine, other := unique(), provider)
    summary = run_sweep(engine, failing)
    assert summary.get("issued") == 1
    row = _row(engine, other)
    assert row.status == "active" and "exited with status 3: reload refused" in row.last_error
    with engine.connect() as conn:
        assert conn.execute(sa.select(audit_log).where(audit_log.c.action == "cert.deploy_failed")).all()


def test_route_leaving_dns_stops_renewal_keeps_row(engine, settings, bind):
    from db.schema import routes

    provider = add_provider(engine, bind.credentials)
    route_id = add_route(engine, domain := unique(), provider)
    assert run_sweep(engine, settings).get("issued") == 1
    with write_transaction(engine) as conn:
        conn.execute(routes.update().where(routes.c.id == route_id).values(tls_mode="auto"))
    row = _row(engine, domain)
    assert run_sweep(engine, settings, clock=lambda: row.renew_at + 10)["due"] == 0
    assert _row(engine, domain).status == "active"
    assert (settings.cert_dir / domain / "fullchain.pem").exists()


def test_aliases_change_reissues_with_new_names(engine, settings, bind):
    from db.schema import routes

    provider = add_provider(engine, bind.credentials)
    route_id = add_route(engine, domain := unique(), provider)
    assert run_sweep(engine, settings).get("issued") == 1
    with write_transaction(engine) as conn:
        conn.execute(routes.update().where(routes.c.id == route_id).values(aliases=json.dumps([f"www.{domain}"])))
    summary = run_sweep(engine, settings)
    assert summary["names_changed"] == 1 and summary.get("renewed") == 1, summary
    leaf = x509.load_pem_x509_certificate((settings.cert_dir / domain / "fullchain.pem").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(sans) == sorted([domain, f"www.{domain}"])


def test_env_is_clean(cert_env):
    assert "PROXYOS_SECRET" in cert_env and os.environ.get("PROXYOS_SECRET") is None


def test_sweep_and_race_on_any_database(any_engine, any_url, settings, bind):
    """The same guarantees on PostgreSQL (when configured) as on SQLite."""
    provider = add_provider(any_engine, bind.credentials)
    add_route(any_engine, domain := unique(), provider, aliases=[f"*.{domain}"])
    barrier = threading.Barrier(2)
    results = []

    def consumer():
        own = create_engine(any_url)
        barrier.wait()
        results.append(run_sweep(own, settings))
        own.dispose()

    threads = [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.get("issued", 0) for r in results) == 1, results
    assert _issued(any_engine, domain) == 1
    row = _row(any_engine, domain)
    summary = run_sweep(any_engine, settings, clock=lambda: row.renew_at + 1)
    assert summary.get("renewed") == 1, summary


def test_lease_lost_mid_order_writes_nothing(engine, settings, bind):
    """A worker whose lease expired and was taken over stops before writing anything."""
    from tasks.certs.issue import Sessions, issue_certificate
    from tasks.certs.propagation import Checker
    from tasks.certs.sync import sync_certificates

    add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
    sync_certificates(engine, int(time.time()))
    cert_id = _row(engine, domain).id

    class TakenOver(Checker):
        def wait(self, *args, **kwargs):
            with write_transaction(engine) as conn:  # another worker takes the row over
                conn.execute(certificates.update().where(certificates.c.id == cert_id)
                             .values(lease_owner="other-worker", lease_expires_at=time.time() + 600))
            kwargs["on_poll"]()
            return super().wait(*args, **kwargs)

    short = dataclasses.replace(settings, lease_seconds=5.0)
    outcome = issue_certificate(
        engine, short, Sessions(engine, short, time.time), cert_id,
        checker_factory=lambda: TakenOver(short.resolvers, short.nameserver_port),
    )
    assert outcome.result == "busy" and "another worker took over" in outcome.error
    row = _row(engine, domain)
    assert row.status == "provisioning" and row.last_error is None and row.lease_owner == "other-worker"
    assert bind.txt(f"_acme-challenge.{domain}") == set()  # still cleaned up
    assert not (settings.cert_dir / domain).exists()
