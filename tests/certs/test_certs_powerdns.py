"""End to end through an HTTP-API provider: PowerDNS (Debian's pdns-server) holds the
zone, the worker publishes through its API, Pebble validates through the resolver."""

from __future__ import annotations

import dataclasses

import dns.message
import dns.query
import sqlalchemy as sa
from cryptography import x509

from db.schema import certificates
from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import add_provider, add_route, unique

# The worker's look-ups go to PowerDNS itself, not through the CA's resolver: a real CA's
# resolver is not shared with the worker, and sharing it here would let the worker's early
# look-up of _acme-challenge (CNAME check) prime its negative cache.


def test_apex_and_wildcard_through_powerdns_api(engine, settings, bind, powerdns):
    settings = dataclasses.replace(settings, resolvers=(("127.0.0.1", powerdns.port),),
                                   nameserver_port=powerdns.port)
    provider = add_provider(engine, {"api_url": powerdns.api_url, "api_key": powerdns.api_key},
                            type_="powerdns", name="pdns")
    add_route(engine, domain := unique("pdns.test"), provider, aliases=[f"*.{domain}"])
    summary = run_sweep(engine, settings)
    assert summary.get("issued") == 1, summary
    with engine.connect() as conn:
        assert conn.execute(sa.select(certificates.c.status)).scalar() == "active"
    leaf = x509.load_pem_x509_certificate((settings.cert_dir / domain / "fullchain.pem").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(sans) == sorted([domain, f"*.{domain}"])
    response = dns.query.udp(dns.message.make_query(f"_acme-challenge.{domain}", "TXT"), "127.0.0.1",
                             port=powerdns.port, timeout=3)
    assert response.answer == []  # both values removed through the API


def test_powerdns_wrong_api_key_is_recorded(engine, settings, bind, powerdns):
    settings = dataclasses.replace(settings, resolvers=(("127.0.0.1", powerdns.port),),
                                   nameserver_port=powerdns.port)
    provider = add_provider(engine, {"api_url": powerdns.api_url, "api_key": "not-the-key-123"},
                            type_="powerdns", name="pdns-wrong")
    add_route(engine, domain := unique("pdns.test"), provider)
    assert run_sweep(engine, settings).get("failed") == 1
    with engine.connect() as conn:
        error = conn.execute(sa.select(certificates.c.last_error)).scalar()
    assert "HTTP 401" in error and "pdns-wrong" in error and "not-the-key-123" not in error, error
    assert domain
