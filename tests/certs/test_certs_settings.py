"""The certificate settings: every variable checked at start-up, with a clear message."""

from __future__ import annotations

import pytest

from workers.config import ConfigError
from workers.settings.certs import load as cert_settings


def test_defaults():
    settings = cert_settings({})
    assert settings.directory.startswith("https://acme-v02.api.letsencrypt.org")
    assert settings.key_type == "ecdsa" and settings.concurrency == 4 and settings.resolvers == ()
    assert settings.weekly_limit == 50 and settings.nameserver_port == 53


def test_values(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    settings = cert_settings({
        "PROXYOS_ACME_DIRECTORY": "https://127.0.0.1:14000/dir", "PROXYOS_ACME_CA_BUNDLE": str(bundle),
        "PROXYOS_DNS_RESOLVERS": "127.0.0.1:5353 127.0.0.2:5353", "PROXYOS_CERT_KEY_TYPE": "RSA",
        "PROXYOS_ACME_EAB_KID": "kid", "PROXYOS_ACME_EAB_HMAC_KEY": "hmac-value-123",
        "PROXYOS_DNS_API_URL_CLOUDFLARE": "http://127.0.0.1:9999/cf",
    })
    assert settings.resolvers == (("127.0.0.1", 5353), ("127.0.0.2", 5353))
    assert settings.key_type == "rsa" and settings.api_urls == {"cloudflare": "http://127.0.0.1:9999/cf"}
    assert settings.ca_label == "custom"
    assert "hmac-value-123" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PROXYOS_ACME_DIRECTORY": "acme.example.com"}, "PROXYOS_ACME_DIRECTORY"),
        ({"PROXYOS_ACME_CA_BUNDLE": "/nonexistent/ca.pem"}, "PROXYOS_ACME_CA_BUNDLE"),
        ({"PROXYOS_ACME_EAB_KID": "kid"}, "PROXYOS_ACME_EAB_KID"),
        ({"PROXYOS_CERT_KEY_TYPE": "dsa"}, "PROXYOS_CERT_KEY_TYPE"),
        ({"PROXYOS_DNS_RESOLVERS": "1.1.1.1:53 8.8.8.8:5353"}, "PROXYOS_DNS_RESOLVERS"),
        ({"PROXYOS_DNS_RESOLVERS": "1.1.1.1:x"}, "PROXYOS_DNS_RESOLVERS"),
        ({"PROXYOS_CERT_CONCURRENCY": "0"}, "PROXYOS_CERT_CONCURRENCY"),
        ({"PROXYOS_DNS_PROPAGATION_TIMEOUT": "soon"}, "PROXYOS_DNS_PROPAGATION_TIMEOUT"),
    ],
)
def test_bad_values(env, variable):
    with pytest.raises(ConfigError) as failure:
        cert_settings(env)
    assert failure.value.variable == variable
