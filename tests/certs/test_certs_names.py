"""Names a CA issues that do not fit a CSR's common name: over 64 characters (SAN-only
CSR) and internationalised names (A-labels for ACME, the route's spelling kept in
`certificates.domain`). Issued for real by Pebble."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.x509.oid import NameOID

from db.schema import cert_issuance_log, certificates
from tasks.certs.keys import make_csr, new_private_key
from tasks.certs.names import acme_name
from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import add_provider, add_route


def _row(engine, domain):
    with engine.connect() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.domain == domain)).one()


def _sans(path) -> list[str]:
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def test_csr_is_san_only_when_the_first_name_exceeds_the_cn_limit():
    key = new_private_key()
    long_name = "l" * 60 + ".example.test"
    csr = x509.load_pem_x509_csr(make_csr(key, [long_name, "short.example.test"]))
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [long_name, "short.example.test"]
    short = x509.load_pem_x509_csr(make_csr(key, ["short.example.test"]))
    assert [a.value for a in short.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["short.example.test"]


@pytest.mark.parametrize(("written", "expected"), [
    ("bücher.example.test", "xn--bcher-kva.example.test"),
    ("Bücher.Example.Test.", "xn--bcher-kva.example.test"),
    ("*.straße.example.test", "*.xn--strae-oqa.example.test"),  # IDNA 2008: ß is kept, not "ss"
    ("xn--bcher-kva.example.test", "xn--bcher-kva.example.test"),
])
def test_internationalised_names_become_a_labels(written, expected):
    assert acme_name(written) == expected


def test_long_and_internationalised_names_are_issued(engine, settings, bind):
    provider = add_provider(engine, bind.credentials)
    tag = secrets.token_hex(3)
    long_domain = f"{'l' * 55}{tag}.{'m' * 10}.example.test"  # 84 characters, each label < 64
    idn_domain = f"bücher-{tag}.example.test"
    idn_alias = f"Straße-{tag}.example.test"
    long_idn = f"日本語ドメイン名例え日本語ドメイン-{tag}.example.test"  # 37 characters, 73 as A-labels
    add_route(engine, long_domain, provider)
    add_route(engine, idn_domain, provider, aliases=[idn_alias])
    add_route(engine, long_idn, provider)
    summary = run_sweep(engine, settings)
    assert summary.get("issued") == 3, summary
    long_row, idn_row = _row(engine, long_domain), _row(engine, idn_domain)
    assert long_row.status == "active" and long_row.last_error is None
    assert _sans(settings.cert_dir / long_domain / "fullchain.pem") == [long_domain]
    ascii_name, ascii_alias = acme_name(idn_domain), acme_name(idn_alias)
    assert ascii_name.startswith("xn--") and ascii_alias.startswith("xn--")
    assert idn_row.status == "active" and idn_row.domain == idn_domain  # the route's spelling
    assert sorted(_sans(settings.cert_dir / ascii_name / "fullchain.pem")) == sorted([ascii_name, ascii_alias])
    long_ascii = acme_name(long_idn)
    assert len(long_ascii) > 64 and _row(engine, long_idn).status == "active"
    assert _sans(settings.cert_dir / long_ascii / "fullchain.pem") == [long_ascii]
    with engine.connect() as conn:
        logged = {r.domain for r in conn.execute(sa.select(cert_issuance_log))}
    assert logged == {long_domain, ascii_name, long_ascii}
    assert bind.txt(f"_acme-challenge.{ascii_name}") == set()
