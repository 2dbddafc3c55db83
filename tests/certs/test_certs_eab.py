"""External account binding, against a Pebble that requires it."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import sqlalchemy as sa

from db.schema import acme_accounts, certificates
from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import add_provider, add_route, unique
from tests.toolkit.servers import serving
from tests.toolkit.servers.pebble import start_pebble

KID, HMAC = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


@pytest.fixture(scope="module")
def eab_pebble(tmp_path_factory, bind):
    yield from serving(start_pebble(
        tmp_path_factory.mktemp("pebble-eab"), bind.resolver_port,
        extra={"externalAccountBindingRequired": True, "externalAccountMACKeys": {KID: HMAC}}))


def test_eab_required_and_given(engine, settings, bind, eab_pebble, caplog):
    caplog.set_level(logging.DEBUG)
    settings = dataclasses.replace(settings, directory=eab_pebble.directory, ca_bundle=str(eab_pebble.ca_bundle))
    add_route(engine, domain := unique(), add_provider(engine, bind.credentials))
    summary = run_sweep(engine, settings)
    assert summary.get("failed") == 1
    with engine.connect() as conn:
        error = conn.execute(sa.select(certificates.c.last_error)).scalar()
    assert "PROXYOS_ACME_EAB_KID" in error, error
    with_eab = dataclasses.replace(settings, eab_kid=KID, eab_hmac_key=HMAC)
    summary = run_sweep(engine, with_eab, clock=lambda: 4e9)
    assert summary.get("issued") == 1, summary
    with engine.connect() as conn:
        accounts = conn.execute(sa.select(acme_accounts.c.acme_url, acme_accounts.c.certs_count)).all()
    assert [tuple(a) for a in accounts] == [(eab_pebble.directory, 1)]
    assert HMAC not in caplog.text
    assert (with_eab.cert_dir / domain / "fullchain.pem").exists()
