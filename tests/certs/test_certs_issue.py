"""End to end against Pebble and BIND 9: the issue pipeline."""

from __future__ import annotations

import json

import sqlalchemy as sa
from cryptography import x509

from db.schema import audit_log, cert_dns_records, cert_issuance_log, certificates
from tasks.certs.issue import Sessions, issue_certificate
from tasks.certs.sync import sync_certificates
from tests.toolkit.factories import add_provider, add_route, unique
from tests.toolkit.snapshots import file_mode


def _cert(engine, domain):
    with engine.connect() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.domain == domain)).one()


def _issue(engine, settings, domain):
    sync_certificates(engine, 0)
    row = _cert(engine, domain)
    return issue_certificate(engine, settings, Sessions(engine, settings, __import__("time").time), row.id)


def test_one_name_issued_files_rows_audit_and_cleanup(engine, settings, bind):
    provider = add_provider(engine, bind.credentials)
    domain = unique()
    add_route(engine, domain, provider)
    outcome = _issue(engine, settings, domain)
    assert outcome.result == "issued", outcome.error
    row = _cert(engine, domain)
    assert row.status == "active" and row.last_error is None
    assert row.issued_at and row.expires_at > row.issued_at and row.last_renewed_at
    chain = (settings.cert_dir / domain / "fullchain.pem").read_bytes()
    leaf = x509.load_pem_x509_certificates(chain)[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == [domain]
    key_path = settings.cert_dir / domain / "privkey.pem"
    assert file_mode(key_path) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()
    assert len(x509.load_pem_x509_certificates(chain)) >= 2  # leaf + intermediate
    with engine.connect() as conn:
        log_rows = conn.execute(sa.select(cert_issuance_log)).all()
        audits = conn.execute(sa.select(audit_log.c.action, audit_log.c.actor, audit_log.c.resource_id)).all()
        leftovers = conn.execute(sa.select(cert_dns_records)).all()
    assert [(r.domain, r.registered_domain, r.method) for r in log_rows] == [(domain, "example.test", "dns01")]
    assert audits == [("cert.issued", "worker", row.id)]
    assert leftovers == []
    assert bind.txt(f"_acme-challenge.{domain}") == set()


def test_apex_and_wildcard_in_one_order(engine, settings, bind):
    provider = add_provider(engine, bind.credentials, fmt="v1")
    domain = unique()
    add_route(engine, domain, provider, aliases=[f"*.{domain}"])
    outcome = _issue(engine, settings, domain)
    assert outcome.result == "issued", outcome.error
    leaf = x509.load_pem_x509_certificate((settings.cert_dir / domain / "fullchain.pem").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(sans) == sorted([domain, f"*.{domain}"])
    assert bind.txt(f"_acme-challenge.{domain}") == set()


def test_cname_delegated_challenge(engine, settings, bind):
    provider = add_provider(engine, bind.credentials, fmt="plain")
    domain = unique()
    target = unique("delegated.test")
    bind.update("example.test", f"_acme-challenge.{domain}", "CNAME", f"{target}.")
    add_route(engine, domain, provider)
    outcome = _issue(engine, settings, domain)
    assert outcome.result == "issued", outcome.error
    assert bind.txt(target) == set()
    assert json.loads(_cert(engine, domain).names) == [domain]
