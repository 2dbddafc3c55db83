"""HTTPS checks against a server with a certificate from a test CA."""

from __future__ import annotations

import dataclasses

from tasks.health.batch import run_batch
from tests.toolkit.factories import add_route, ups


def check(engine, settings, route_id):
    (result,) = run_batch(engine, settings, [(route_id, None)]).results
    return result


def test_trusted_with_the_ca(engine, settings, tls_upstream, ca_file):
    route = add_route(engine, upstreams=ups(tls_upstream.address), upstream_protocol="https-trusted")
    result = check(engine, dataclasses.replace(settings, ca_file=ca_file), route)
    assert (result.status, result.status_code) == ("healthy", 200)


def test_untrusted_certificate_is_named(engine, settings, tls_upstream):
    route = add_route(engine, upstreams=ups(tls_upstream.address), upstream_protocol="https-trusted")
    result = check(engine, settings, route)
    assert result.status == "unhealthy"
    assert result.error.startswith(f"{tls_upstream.address}: TLS certificate not trusted (")


def test_insecure_protocol_does_not_verify(engine, settings, tls_upstream):
    route = add_route(engine, upstreams=ups(tls_upstream.address), upstream_protocol="https-insecure")
    assert check(engine, settings, route).status == "healthy"


def test_skip_tls_verify_does_not_verify(engine, settings, tls_upstream):
    route = add_route(
        engine, upstreams=ups(tls_upstream.address), upstream_protocol="https-trusted", skip_tls_verify=1
    )
    assert check(engine, settings, route).status == "healthy"


def test_upstream_skip_verify_flag(engine, settings, tls_upstream):
    route = add_route(
        engine, upstreams=ups(tls_upstream.address, skipVerify=True), upstream_protocol="https-trusted"
    )
    assert check(engine, settings, route).status == "healthy"


def test_https_scheme_in_address_wins_over_protocol(engine, settings, tls_upstream, ca_file):
    route = add_route(engine, upstreams=ups(f"https://{tls_upstream.address}"), upstream_protocol="http")
    result = check(engine, dataclasses.replace(settings, ca_file=ca_file), route)
    assert result.status == "healthy"


def test_sni_is_sent_and_verified(engine, settings, tls_upstream, ca_file):
    route = add_route(
        engine,
        upstreams=ups(tls_upstream.address),
        upstream_protocol="https-trusted",
        upstream_sni="backend.test",
    )
    result = check(engine, dataclasses.replace(settings, ca_file=ca_file), route)
    assert result.status == "healthy"
    assert tls_upstream.sni == ["backend.test"]


def test_sni_not_in_certificate(engine, settings, tls_upstream, ca_file):
    route = add_route(
        engine,
        upstreams=ups(tls_upstream.address),
        upstream_protocol="https-trusted",
        upstream_sni="other.test",
    )
    result = check(engine, dataclasses.replace(settings, ca_file=ca_file), route)
    assert result.status == "unhealthy"
    assert "TLS certificate not valid for this host name" in result.error
    assert tls_upstream.sni == ["other.test"]


def test_plain_http_to_a_tls_port_is_a_clear_failure(engine, settings, tls_upstream):
    route = add_route(engine, upstreams=ups(tls_upstream.address), upstream_protocol="http")
    result = check(engine, settings, route)
    assert result.status == "unhealthy"
    assert result.error.startswith(f"{tls_upstream.address}: ")
