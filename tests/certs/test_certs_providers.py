"""The HTTP-API DNS providers against a loopback server that answers as each provider's
public API documentation describes."""

from __future__ import annotations

import datetime
import logging

import pytest

from tasks.certs import providers
from tasks.certs.errors import ConfigurationError, ProviderError
from tasks.certs.providers.route53 import sigv4_headers
from tests.toolkit.servers import serving
from tests.toolkit.servers.provider_apis import VALID, ZONE, Api, start_provider_apis

KINDS = ["cloudflare", "digitalocean", "porkbun", "godaddy", "route53", "powerdns"]


@pytest.fixture(scope="module")
def api():
    yield from serving(start_provider_apis())


def make(api: Api, kind: str, **override):
    credentials = dict(VALID[kind], **override)
    if kind == "powerdns":
        credentials.setdefault("api_url", api.url("powerdns"))
        return providers.get(kind)(credentials, name=f"my-{kind}")
    return providers.get(kind)(credentials, name=f"my-{kind}", api_url=api.url(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_two_values_on_one_name_then_cleanup(api, kind):
    provider = make(api, kind)
    fqdn = f"_acme-challenge.{kind}.{ZONE}"
    provider.present(fqdn, ZONE, "value-apex")
    provider.present(fqdn, ZONE, "value-wildcard")
    provider.present(fqdn, ZONE, "value-wildcard")  # idempotent
    assert api.values(kind, fqdn) == ["value-apex", "value-wildcard"]
    provider.cleanup(fqdn, ZONE, "value-apex")
    assert api.values(kind, fqdn) == ["value-wildcard"]
    provider.cleanup(fqdn, ZONE, "value-wildcard")
    provider.cleanup(fqdn, ZONE, "value-wildcard")  # absent: not an error
    assert api.values(kind, fqdn) == []


@pytest.mark.parametrize("kind", KINDS)
def test_apex_challenge_name(api, kind):
    provider = make(api, kind)
    provider.present(ZONE, ZONE, "at-the-apex")
    assert api.values(kind, ZONE) == ["at-the-apex"]
    provider.cleanup(ZONE, ZONE, "at-the-apex")
    assert api.values(kind, ZONE) == []


BAD = {
    "cloudflare": {"api_token": "wrong-token-987654"},
    "digitalocean": {"auth_token": "wrong-token-987654"},
    "porkbun": {"api_secret": "wrong-secret-987654"},
    "godaddy": {"api_secret": "wrong-secret-987654"},
    "route53": {"secret_access_key": "wrong-secret-987654"},
    "powerdns": {"api_key": "wrong-key-987654"},
}


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_credentials_name_the_provider_not_the_secret(api, kind, caplog):
    caplog.set_level(logging.DEBUG)
    provider = make(api, kind, **BAD[kind])
    with pytest.raises(ProviderError) as failure:
        provider.present(f"_acme-challenge.{ZONE}", ZONE, "v")
    message = str(failure.value)
    assert f"my-{kind}" in message, message
    for secret in list(BAD[kind].values()) + list(VALID[kind].values()):
        if len(secret) > 12:
            assert secret not in message and secret not in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_zone(api, kind):
    provider = make(api, kind)
    with pytest.raises(ProviderError) as failure:
        provider.present("_acme-challenge.other.org", "other.org", "v")
    assert "other.org" in str(failure.value) or "404" in str(failure.value), str(failure.value)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_credentials(kind):
    with pytest.raises(ConfigurationError, match="lacks credential"):
        providers.get(kind)({}, name="empty")


def test_unreachable_api(api):
    provider = providers.get("cloudflare")(VALID["cloudflare"], api_url="http://127.0.0.1:9/x")
    with pytest.raises(ProviderError, match="unreachable"):
        provider.present(f"_acme-challenge.{ZONE}", ZONE, "v")


def test_sigv4_matches_aws_published_examples():
    when = datetime.datetime(2015, 8, 30, 12, 36, tzinfo=datetime.UTC)
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    vanilla = sigv4_headers(
        "GET", "https://example.amazonaws.com/", b"", "AKIDEXAMPLE", secret, when, "us-east-1", "service"
    )
    assert vanilla["Authorization"].endswith("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    assert vanilla["X-Amz-Date"] == "20150830T123600Z"
    ordered = sigv4_headers(
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        b"",
        "AKIDEXAMPLE",
        secret,
        when,
        "us-east-1",
        "service",
    )
    assert ordered["Authorization"].endswith("b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")


def test_requests_follow_each_api(api):
    """The calls made for one value, in order, as each API documents them."""
    api.requests.clear()
    for kind in KINDS:
        make(api, kind).present(f"_acme-challenge.seq.{ZONE}", ZONE, "v1")
    seen = {}
    for kind, method, path in api.requests:
        seen.setdefault(kind, []).append(f"{method} {path}")
    assert seen["cloudflare"] == [
        "GET /zones",
        "GET /zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records",
        "POST /zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records",
    ]
    assert seen["digitalocean"] == [f"GET /domains/{ZONE}/records", f"POST /domains/{ZONE}/records"]
    assert seen["porkbun"] == [
        f"POST /dns/retrieveByNameType/{ZONE}/TXT/_acme-challenge.seq",
        f"POST /dns/create/{ZONE}",
    ]
    assert seen["godaddy"] == [
        f"GET /v1/domains/{ZONE}/records/TXT/_acme-challenge.seq",
        f"PUT /v1/domains/{ZONE}/records/TXT/_acme-challenge.seq",
    ]
    assert seen["route53"] == [
        "GET /2013-04-01/hostedzonesbyname",
        "GET /2013-04-01/hostedzone/Z1D633PJN98FT9/rrset",
        "POST /2013-04-01/hostedzone/Z1D633PJN98FT9/rrset/",
    ]
    assert seen["powerdns"] == [
        f"GET /api/v1/servers/localhost/zones/{ZONE}.",
        f"PATCH /api/v1/servers/localhost/zones/{ZONE}.",
    ]
