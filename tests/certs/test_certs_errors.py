"""Errors a person can act on, credentials in ProxyOS's formats, and no secret anywhere."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import random

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from db.engine import write_transaction
from db.schema import acme_account_keys, certificates, task_runs
from tasks.certs import policy
from tasks.certs.credentials import decrypt, encrypt, load_credentials
from tasks.certs.errors import ConfigurationError
from tasks.certs.issue import Sessions, issue_certificate
from tasks.certs.sweep import run_sweep
from tasks.certs.sync import route_names, sync_certificates
from tests.toolkit.factories import SECRET, add_provider, add_route, unique


def _proxyos_v2(plaintext: str, secret: str) -> str:
    """Encrypt exactly as SCHEMA.md describes, independently of the module under test."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=b"proxyos-aes-key-v2").derive(secret.encode())
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext.encode(), None)
    return "enc:v2:" + base64.urlsafe_b64encode(iv + sealed[-16:] + sealed[:-16]).decode().rstrip("=")


def _proxyos_v1(plaintext: str, secret: str) -> str:
    key = hashlib.sha256(secret.encode()).digest()
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext.encode(), None)
    return "enc:v1:" + base64.urlsafe_b64encode(iv + sealed[-16:] + sealed[:-16]).decode().rstrip("=")


def test_credentials_formats():
    data = '{"api_token": "tok-123456789"}'
    assert load_credentials(_proxyos_v2(data, "s3cret"), "s3cret", "cf") == {"api_token": "tok-123456789"}
    assert load_credentials(_proxyos_v1(data, "s3cret"), "s3cret", "cf") == {"api_token": "tok-123456789"}
    assert load_credentials(data, None, "cf") == {"api_token": "tok-123456789"}
    assert decrypt(encrypt("x", "k"), "k", "v") == "x"
    with pytest.raises(ConfigurationError, match="PROXYOS_SECRET differs"):
        load_credentials(_proxyos_v2(data, "s3cret"), "other", "cf")
    with pytest.raises(ConfigurationError, match="PROXYOS_SECRET is not set"):
        load_credentials(_proxyos_v2(data, "s3cret"), None, "cf")
    with pytest.raises(ConfigurationError, match="not a JSON object"):
        load_credentials("[1, 2]", None, "cf")
    with pytest.raises(ConfigurationError, match="could not be decrypted"):
        load_credentials("enc:v2:AAAA", "s3cret", "cf")


def test_policy_rules():
    day = 86400
    assert policy.renew_at(0, 90 * day) == 60 * day
    assert policy.renew_at(0, 6 * day) == 3 * day
    rng = random.Random(1)
    steps = [policy.backoff_seconds(n, rng) for n in (1, 2, 3, 4, 5, 9)]
    assert 48 <= steps[0] <= 72 and 480 <= steps[1] <= 720 and 4800 <= steps[2] <= 7200
    assert all(s <= day for s in steps) and steps[-1] >= 0.8 * day
    assert policy.registered_domain("a.b.example.co.uk") == "example.co.uk"
    assert policy.registered_domain("*.x.example.com") == "example.com"
    assert 100 <= policy.ari_pick(100, 200, rng) <= 200


def test_route_names_validation():
    assert route_names("A.example.com", '["b.example.com", "a.example.com", "*.example.com"]') == [
        "a.example.com", "b.example.com", "*.example.com"]
    for bad in ('{"x": 1}', "not json", '["bad name.com"]'):
        with pytest.raises(ValueError):
            route_names("a.example.com", bad)


def _cert(engine, domain):
    with engine.connect() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.domain == domain)).one()


@pytest.mark.parametrize(
    ("credentials", "type_", "fmt", "expected"),
    [
        ({"nameserver": "127.0.0.1"}, "rfc2136", "v2", "lacks credential 'tsig_key', 'tsig_secret'"),
        ({"api_token": "x"}, "no-such-dns", "v2", "unknown DNS provider type 'no-such-dns'"),
        ("enc:v2:" + "A" * 60, "rfc2136", "raw", "could not be decrypted"),
        ({"nameserver": "127.0.0.1", "tsig_key": "k", "tsig_secret": "!!notbase64"}, "rfc2136", "plain",
         "not valid base64"),
    ],
)
def test_unusable_provider_rows_are_recorded(engine, settings, credentials, type_, fmt, expected):
    provider = add_provider(engine, credentials, type_=type_, fmt=fmt)
    add_route(engine, domain := unique(), provider)
    summary = run_sweep(engine, settings)
    assert summary.get("failed") == 1
    row = _cert(engine, domain)
    assert row.status == "error" and expected in row.last_error, row.last_error


def test_missing_provider_and_missing_zone(engine, settings, bind):
    add_route(engine, no_provider := unique(), None, tls_mode="dns")
    add_route(engine, ghost := unique("nowhere.invalid"), add_provider(engine, bind.credentials))
    run_sweep(engine, settings)
    assert "has no DNS provider" in _cert(engine, no_provider).last_error
    message = _cert(engine, ghost).last_error
    assert "no DNS zone found" in message or "zone of" in message, message


def test_propagation_timeout_names_the_nameserver(engine, settings, bind):
    """A provider that reports success but updates a zone the nameservers do not serve."""
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        settings = dataclasses.replace(settings, nameserver_port=silent.getsockname()[1], propagation_timeout=1.0)
        add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
        run_sweep(engine, settings)
    finally:
        silent.close()
    row = _cert(engine, domain)
    assert "was still not served by nameserver ns1.example.test (127.0.0.1)" in row.last_error
    assert bind.txt(f"_acme-challenge.{domain}") == set()  # cleaned up after the failure


def test_no_secret_in_logs_rows_or_files(engine, settings, bind, caplog):
    """Issue with DEBUG logging everywhere (the acme library's included): no TSIG secret,
    PROXYOS_SECRET, account key or certificate key appears in any log record or row."""
    caplog.set_level(logging.DEBUG)
    add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
    assert run_sweep(engine, settings).get("issued") == 1
    key_pem = (settings.cert_dir / domain / "privkey.pem").read_text()
    with engine.connect() as conn:
        stored_key = conn.execute(sa.select(acme_account_keys.c.key_pem)).scalar()
        rows = json.dumps([list(map(str, r)) for r in conn.execute(sa.select(certificates)).all()])
    assert stored_key.startswith("enc:v2:")
    account_pem = decrypt(stored_key, SECRET, "key")
    text = caplog.text
    assert "acme.client" in text and "[body omitted]" in text  # the library did log at DEBUG
    secrets_ = [bind.tsig_secret, SECRET, key_pem.splitlines()[1], account_pem.splitlines()[1],
                stored_key[10:40]]
    for secret in secrets_:
        assert secret not in text
        assert secret not in rows


def test_issue_on_deleted_certificate_and_busy_lease(engine, settings, bind):
    add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
    sync_certificates(engine, 0)
    row = _cert(engine, domain)
    with write_transaction(engine) as conn:
        conn.execute(certificates.update().where(certificates.c.id == row.id)
                     .values(lease_owner="someone", lease_expires_at=4e9))
    outcome = issue_certificate(engine, settings, Sessions(engine, settings, lambda: 1e9), row.id)
    assert outcome.result == "busy"
    assert issue_certificate(engine, settings, Sessions(engine, settings, lambda: 1e9), "nope").result == "failed"
    with engine.connect() as conn:
        assert conn.execute(sa.select(task_runs)).all() == []


def test_unwritable_certificate_directory_is_recorded(engine, settings, bind, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    settings = dataclasses.replace(settings, cert_dir=blocker)
    add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
    summary = run_sweep(engine, settings)
    assert summary.get("failed") == 1
    message = _cert(engine, domain).last_error
    assert "the CA issued the certificate but writing it to" in message and str(blocker) in message


def test_ca_errors_become_actionable_messages():
    import calendar

    from acme import messages

    from tasks.certs.acme_errors import call, describe

    limited = messages.Error.with_code(
        "rateLimited", detail="too many certificates (5) already issued for this exact set of identifiers in "
        "the last 168h0m0s, retry after 2026-12-01 10:00:00 UTC")
    error = describe(limited, "creating the ACME order")
    assert error.retry_at == calendar.timegm((2026, 12, 1, 10, 0, 0))
    assert "rate limit" in str(error) and "retry after 2026-12-01 10:00 UTC" in str(error)
    refused = describe(messages.Error.with_code("unauthorized", detail="Incorrect TXT record"), "validating x")
    assert "Incorrect TXT record" in str(refused) and "did not see the TXT value" in str(refused)

    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise messages.Error.with_code("badNonce", detail="JWS has an invalid anti-replay nonce")
        return "ok"

    assert call(flaky, what="x") == "ok" and len(attempts) == 3


def test_disabled_provider_row(engine, settings, bind):
    from db.schema import dns_providers

    provider = add_provider(engine, bind.credentials, name="off")
    with write_transaction(engine) as conn:
        conn.execute(dns_providers.update().where(dns_providers.c.id == provider).values(enabled=0))
    add_route(engine, domain := unique(), provider)
    run_sweep(engine, settings)
    assert "DNS provider 'off' of route" in _cert(engine, domain).last_error


def test_without_proxyos_secret(engine, settings, bind):
    settings = dataclasses.replace(settings, secret=None)
    add_route(engine, plain := unique(), add_provider(engine, bind.credentials, fmt="plain"))
    add_route(engine, encrypted := unique(), add_provider(engine, bind.credentials, fmt="v2", name="enc"))
    summary = run_sweep(engine, settings)
    assert summary.get("failed") == 2, summary
    assert "encrypted (enc:v2) but PROXYOS_SECRET is not set" in _cert(engine, encrypted).last_error
    assert _cert(engine, plain).last_error.startswith("PROXYOS_SECRET is not set: the ACME account key")
    with engine.connect() as conn:
        assert conn.execute(sa.select(acme_account_keys.c.key_pem)).all() == []  # nothing stored in clear
