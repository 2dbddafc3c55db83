"""The ACME account key is stored only encrypted with PROXYOS_SECRET. Without a secret
the certs job says so and stores nothing; a plaintext key an earlier version stored is
still used, and encrypted in place once a secret is set."""

from __future__ import annotations

import dataclasses
import logging

import sqlalchemy as sa

from db.schema import acme_account_keys, acme_accounts, certificates
from tasks.certs.credentials import decrypt
from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import SECRET, add_plaintext_account_key, add_provider, add_route, unique


def _keys(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(acme_account_keys.c.key_pem)).scalars())


def _row(engine, domain):
    with engine.connect() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.domain == domain)).one()


def test_without_a_secret_nothing_is_stored_and_the_job_says_why(engine, settings, bind):
    plain = dataclasses.replace(settings, secret=None)
    provider = add_provider(engine, bind.credentials, fmt="plain")
    add_route(engine, first := unique(), provider)
    add_route(engine, second := unique(), provider)
    summary = run_sweep(engine, plain)
    assert summary.get("failed") == 2 and not summary.get("issued"), summary
    [said] = summary["account_problems"]  # one line for the run, besides each row's error
    assert said.startswith("PROXYOS_SECRET is not set"), said
    for domain in (first, second):
        message = _row(engine, domain).last_error
        assert "PROXYOS_SECRET is not set" in message and "ACME account key" in message, message
    assert _keys(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(acme_accounts)).all() == []


def test_a_plaintext_key_is_encrypted_once_a_secret_is_set(engine, settings, bind):
    pem = add_plaintext_account_key(engine, settings)
    provider = add_provider(engine, bind.credentials)
    add_route(engine, unique(), provider)
    assert run_sweep(engine, settings).get("issued") == 1
    [stored] = _keys(engine)
    assert stored.startswith("enc:v2:") and decrypt(stored, SECRET, "key") == pem  # the same account
    add_route(engine, other := unique(), provider)
    assert run_sweep(engine, settings).get("issued") == 1
    assert _keys(engine) == [stored] and _row(engine, other).status == "active"


def test_a_plaintext_key_is_still_used_without_a_secret(engine, settings, bind, caplog):
    plain = dataclasses.replace(settings, secret=None)
    pem = add_plaintext_account_key(engine, settings)
    add_route(engine, unique(), add_provider(engine, bind.credentials, fmt="plain"))
    caplog.set_level(logging.WARNING)
    assert run_sweep(engine, plain).get("issued") == 1
    assert _keys(engine) == [pem]  # kept as it was: nothing new stored in clear
    assert "set PROXYOS_SECRET" in caplog.text
