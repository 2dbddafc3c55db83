"""The certificate settings (`PROXYOS_ACME_*`, `PROXYOS_DNS_*`, `PROXYOS_CERT_*`,
`PROXYOS_CADDY_ADMIN_URL`; see docs/certs.md), checked at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks.certs import providers
from tasks.certs.keys import KEY_TYPES
from tasks.certs.settings import LETSENCRYPT, CertSettings
from tasks.redaction import remember

from ..config import ConfigError, env_choice, env_float, env_int, env_str


def _resolvers(env: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    raw = env_str(env, "PROXYOS_DNS_RESOLVERS")
    if not raw:
        return ()
    found = []
    for item in raw.replace(",", " ").split():
        if item.startswith("["):  # [IPv6]:port
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:
            host, port = item, ""
        try:
            found.append((host, int(port) if port else 53))
        except ValueError:
            raise ConfigError(
                "PROXYOS_DNS_RESOLVERS", raw, "addresses like 1.1.1.1, 127.0.0.1:5353 or [::1]:53"
            ) from None
    ports = {p for _, p in found}
    if len(ports) > 1:
        raise ConfigError("PROXYOS_DNS_RESOLVERS", raw, "resolvers that share one port")
    return tuple(found)


def load(env: Mapping[str, str]) -> CertSettings:
    """Read and check every certificate setting (ConfigError on the first bad one)."""
    directory = env_str(env, "PROXYOS_ACME_DIRECTORY", LETSENCRYPT)
    if not directory.startswith(("https://", "http://")):
        raise ConfigError("PROXYOS_ACME_DIRECTORY", directory, "an https:// URL of an ACME directory")
    bundle = env_str(env, "PROXYOS_ACME_CA_BUNDLE")
    if bundle and not Path(bundle).is_file():
        raise ConfigError("PROXYOS_ACME_CA_BUNDLE", bundle, "the path of a PEM file that exists")
    kid, hmac_key = env_str(env, "PROXYOS_ACME_EAB_KID"), env_str(env, "PROXYOS_ACME_EAB_HMAC_KEY")
    remember(hmac_key)
    if bool(kid) != bool(hmac_key):
        raise ConfigError("PROXYOS_ACME_EAB_KID", kid or "", "set together with PROXYOS_ACME_EAB_HMAC_KEY")
    secret = env_str(env, "PROXYOS_SECRET")
    remember(secret)
    api_urls = {}
    for kind in providers.types():
        url = env_str(env, f"PROXYOS_DNS_API_URL_{kind.upper()}")
        if url:
            api_urls[kind] = url
    caddy = env_str(env, "PROXYOS_CADDY_ADMIN_URL")
    if caddy:
        from tasks.certs.caddy_admin import parse_admin_url

        try:
            parse_admin_url(caddy)
        except ValueError as exc:
            raise ConfigError("PROXYOS_CADDY_ADMIN_URL", caddy, str(exc)) from None
    return CertSettings(
        caddy_admin_url=caddy,
        directory=directory,
        email=env_str(env, "PROXYOS_ACME_EMAIL", "") or "",
        ca_bundle=bundle,
        eab_kid=kid,
        eab_hmac_key=hmac_key,
        cert_dir=Path(env_str(env, "PROXYOS_CERT_DIR", "./data/certs")),
        resolvers=_resolvers(env),
        nameserver_port=env_int(env, "PROXYOS_DNS_NAMESERVER_PORT", 53, minimum=1, maximum=65_535),
        key_type=env_choice(env, "PROXYOS_CERT_KEY_TYPE", "ecdsa", KEY_TYPES),
        deploy_hook=env_str(env, "PROXYOS_CERT_DEPLOY_HOOK"),
        secret=secret,
        propagation_timeout=env_float(env, "PROXYOS_DNS_PROPAGATION_TIMEOUT", 300.0, minimum=1.0, maximum=86_400),
        order_timeout=env_float(env, "PROXYOS_ACME_ORDER_TIMEOUT", 180.0, minimum=1.0, maximum=86_400),
        concurrency=env_int(env, "PROXYOS_CERT_CONCURRENCY", 4, minimum=1, maximum=256),
        lease_seconds=env_float(env, "PROXYOS_CERT_LEASE_SECONDS", 900.0, minimum=5.0, maximum=86_400),
        weekly_limit=env_int(env, "PROXYOS_CERT_WEEKLY_LIMIT", 50, minimum=1, maximum=100_000),
        api_urls=api_urls,
    )
