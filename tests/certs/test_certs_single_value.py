"""A provider that can hold one TXT value per name: apex + wildcard validated in turns."""

from __future__ import annotations

import sqlalchemy as sa

from db.schema import certificates
from tasks.certs import providers
from tasks.certs.providers.rfc2136 import RFC2136
from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import add_provider, add_route, unique


class OneValueAtATime(RFC2136):
    """BIND underneath, but refusing a second value on a name, like such providers do."""

    type = "test-one-value"
    single_value = True
    seen_max = 0

    def present(self, fqdn, zone, value):
        import dns.message
        import dns.query

        port = int(self.credentials["port"])
        response = dns.query.udp(dns.message.make_query(fqdn, "TXT"), "127.0.0.1", port=port, timeout=3)
        if any(rrset.rdtype == 16 for rrset in response.answer):
            raise AssertionError(f"{fqdn} already holds a value")
        super().present(fqdn, zone, value)


def test_apex_and_wildcard_with_single_value_provider(engine, settings, bind):
    providers.register(OneValueAtATime)
    provider = add_provider(engine, bind.credentials, type_="test-one-value")
    add_route(engine, domain := unique(), provider, aliases=[f"*.{domain}"])
    summary = run_sweep(engine, settings)
    assert summary.get("issued") == 1, summary
    with engine.connect() as conn:
        assert conn.execute(sa.select(certificates.c.status)).scalar() == "active"
    assert bind.txt(f"_acme-challenge.{domain}") == set()
