"""A crash between the CA's steps and our commit never makes the CA issue twice: the order
is saved as soon as the CA created it, and the next attempt continues it (real Pebble,
real BIND, SQLite and PostgreSQL). A crash is a BaseException raised at the chosen step:
like SIGKILL, nothing after it runs and no handler records anything."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from db.engine import is_sqlite, sqlite_path, write_transaction
from db.schema import cert_issuance_log, cert_orders, certificates, routes
from tasks.certs import issue
from tasks.certs.credentials import decrypt
from tasks.certs.issue import Sessions, issue_certificate
from tasks.certs.keys import key_pem, new_private_key
from tasks.certs.order import OrderFlow
from tasks.certs.propagation import Checker
from tasks.certs.saved_order import OrderStore
from tasks.certs.sync import sync_certificates
from tests.toolkit.factories import add_plaintext_account_key, add_provider, add_route, unique
from tests.toolkit.servers.pebble import pebble_counts
from tests.toolkit.snapshots import file_mode


class Crash(BaseException):
    """The process dies here."""


def _crash(*_args, **_kwargs):
    raise Crash


# Where the worker dies, and what state the CA's order is left in.
CRASH_POINTS = {
    "pending": (OrderFlow, "_validate_round"),  # ordered, no challenge answered
    "ready": (OrderFlow, "_post_finalize"),  # validated, not finalized
    "valid": (issue, "write_certificate"),  # issued, not stored (the kill test's window)
}


def _cert(engine, domain):
    with engine.connect() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.domain == domain)).one()


def _saved(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(cert_orders)).all()


def _attempt(engine, settings, cert_id, **kwargs):
    """One run of a freshly started worker."""
    return issue_certificate(engine, settings, Sessions(engine, settings, time.time), cert_id, **kwargs)


def _new_certificate(engine, bind, domain, fmt="v2"):
    add_route(engine, domain, add_provider(engine, bind.credentials, fmt=fmt))
    sync_certificates(engine, int(time.time()))
    return _cert(engine, domain).id


def _crashed_attempt(monkeypatch, engine, settings, cert_id, point: str, **kwargs) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(*CRASH_POINTS[point], _crash)
        with pytest.raises(Crash):
            _attempt(engine, settings, cert_id, **kwargs)


def _leaf_and_key(settings, domain):
    folder = settings.cert_dir / domain
    leaf = x509.load_pem_x509_certificate((folder / "fullchain.pem").read_bytes())
    return leaf, folder / "privkey.pem"


def _public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_crash_is_continued_with_the_same_order(point, any_engine, settings, bind, pebble, monkeypatch):
    domain = unique()
    cert_id = _new_certificate(any_engine, bind, domain)
    before = pebble_counts(pebble)
    _crashed_attempt(monkeypatch, any_engine, settings, cert_id, point)
    [saved] = _saved(any_engine)
    assert saved.certificate_id == cert_id and json.loads(saved.names) == [domain]
    assert saved.key_pem.startswith("enc:v2:") and saved.key_file is None
    assert b"PRIVATE KEY" not in saved.key_pem.encode()
    crashed = pebble_counts(pebble)
    assert crashed["orders"] - before["orders"] == 1
    assert crashed["issued"] - before["issued"] == (1 if point == "valid" else 0)
    assert _cert(any_engine, domain).status == "provisioning"

    outcome = _attempt(any_engine, settings, cert_id)

    assert outcome.result == "issued", outcome.error
    after = pebble_counts(pebble)
    assert after["orders"] - before["orders"] == 1, "the restart ordered again"
    assert after["issued"] - before["issued"] == 1, "the CA issued the certificate twice"
    row = _cert(any_engine, domain)
    assert row.status == "active" and row.last_error is None
    with any_engine.connect() as conn:
        logged = conn.execute(sa.select(cert_issuance_log.c.domain)).scalars().all()
    assert logged == [domain]
    assert _saved(any_engine) == []
    leaf, key_path = _leaf_and_key(settings, domain)
    assert file_mode(key_path) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert _public(key) == leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    saved_key = decrypt(saved.key_pem, settings.secret, "test").encode()
    assert saved_key == key_path.read_bytes()  # the key saved with the order, no other


def test_no_private_key_in_plaintext_in_the_database_file(engine, settings, bind, monkeypatch):
    cert_id = _new_certificate(engine, bind, unique())
    _crashed_attempt(monkeypatch, engine, settings, cert_id, "valid")
    assert _saved(engine)
    path = sqlite_path(engine)
    assert is_sqlite(engine) and path is not None
    files = [p for p in path.parent.glob(path.name + "*") if p.is_file()]
    assert b"PRIVATE KEY" not in b"".join(p.read_bytes() for p in files)


def test_without_a_secret_the_key_waits_in_a_0600_file(engine, settings, bind, pebble, monkeypatch):
    import dataclasses

    plain = dataclasses.replace(settings, secret=None)
    add_plaintext_account_key(engine, plain)  # an earlier version's: the only way to work without a secret
    domain = unique()
    cert_id = _new_certificate(engine, bind, domain, fmt="plain")
    before = pebble_counts(pebble)
    _crashed_attempt(monkeypatch, engine, plain, cert_id, "valid")
    [saved] = _saved(engine)
    assert saved.key_pem is None
    key_file = Path(saved.key_file)
    assert key_file.parent == plain.cert_dir / ".orders"
    assert file_mode(key_file) == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()

    assert _attempt(engine, plain, cert_id).result == "issued"
    assert pebble_counts(pebble)["issued"] - before["issued"] == 1
    assert _saved(engine) == [] and not key_file.exists()
    _, key_path = _leaf_and_key(plain, domain)
    assert list(plain.cert_dir.rglob("*.key")) == [] and key_path.exists()


def _save_unknown_order(engine, settings, pebble, cert_id, account_id, names):
    store = OrderStore(engine, cert_id, account_id, settings.secret, settings.cert_dir, time.time)
    gone = f"https://127.0.0.1:{pebble.port}/my-order/forgotten-{cert_id}"
    store.ordered(gone, names, key_pem(new_private_key()))


class _Unchecked(Checker):
    """Declares every TXT value served at once."""

    def __init__(self, settings) -> None:
        super().__init__(settings.resolvers, settings.nameserver_port)

    def wait(self, *args, **kwargs) -> None:
        return None


def _make_invalid(monkeypatch, engine, settings, cert_id):
    """A crash after the CA made the order invalid (its TXT value was never published),
    before the worker could drop the saved order."""

    with monkeypatch.context() as patch:
        patch.setattr("tasks.certs.providers.rfc2136.RFC2136.present", lambda *a, **k: None)
        patch.setattr(OrderStore, "discarded", _crash)
        with pytest.raises(Crash):
            _attempt(engine, settings, cert_id, checker_factory=lambda: _Unchecked(settings))


def _until_the_resolver_forgets_the_failure(bind, name: str) -> None:
    """The CA's resolver keeps the failed validation's NXDOMAIN for up to a second; an
    extra TXT value at the name shows when it has let go (the CA accepts any match)."""
    import dns.message
    import dns.query
    import dns.rcode

    bind.update("example.test", name, "TXT", "placeholder")
    deadline = time.monotonic() + 10
    while dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=bind.resolver_port,
                        timeout=2).rcode() == dns.rcode.NXDOMAIN:
        assert time.monotonic() < deadline, "the resolver kept the negative answer"
        time.sleep(0.1)


@pytest.mark.parametrize("stale", ["unknown to the CA", "invalid", "other names"])
def test_a_saved_order_that_cannot_be_continued_is_replaced(stale, engine, settings, bind, pebble, monkeypatch,
                                                            caplog):
    domain = unique()
    cert_id = _new_certificate(engine, bind, domain)
    if stale == "unknown to the CA":
        account_id = Sessions(engine, settings, time.time).get(settings.directory).account_id
        _save_unknown_order(engine, settings, pebble, cert_id, account_id, [domain])
    elif stale == "invalid":
        _make_invalid(monkeypatch, engine, settings, cert_id)
        _until_the_resolver_forgets_the_failure(bind, f"_acme-challenge.{domain}")
    else:
        _crashed_attempt(monkeypatch, engine, settings, cert_id, "pending")
        with write_transaction(engine) as conn:
            conn.execute(routes.update().where(routes.c.domain == domain)
                         .values(aliases=json.dumps([f"www.{domain}"])))
        sync_certificates(engine, int(time.time()))
    assert len(_saved(engine)) == 1
    before = pebble_counts(pebble)
    caplog.set_level("INFO", logger="proxyos.certs.order")

    outcome = _attempt(engine, settings, cert_id)

    assert outcome.result == "issued", outcome.error
    after = pebble_counts(pebble)
    assert (after["orders"] - before["orders"], after["issued"] - before["issued"]) == (1, 1)
    assert _saved(engine) == []
    assert any("ordering afresh: the saved ACME order" in r.getMessage() for r in caplog.records)
    row = _cert(engine, domain)
    assert row.status == "active"
    leaf, _ = _leaf_and_key(settings, domain)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(json.loads(row.names))


def test_an_order_the_ca_made_invalid_is_dropped_with_the_failure(engine, settings, bind, monkeypatch):
    cert_id = _new_certificate(engine, bind, unique())
    monkeypatch.setattr("tasks.certs.providers.rfc2136.RFC2136.present", lambda *a, **k: None)
    outcome = _attempt(engine, settings, cert_id, checker_factory=lambda: _Unchecked(settings))
    assert outcome.result == "failed" and "validating" in outcome.error
    assert _saved(engine) == []
