"""What points the certificate workers at a test's BIND and Pebble: their settings, for
runs in this process, and their environment, for `proxyos-worker` processes."""

from __future__ import annotations

from pathlib import Path

from tasks.certs.settings import CertSettings

from .factories import SECRET
from .servers.bind import Bind
from .servers.pebble import Pebble


def cert_settings(cert_dir: Path, bind: Bind, pebble: Pebble, **overrides) -> CertSettings:
    """Settings for BIND and Pebble, with timeouts short enough for tests; `overrides`
    replace any of them."""
    values = dict(
        directory=pebble.directory,
        email="admin@example.test",
        ca_bundle=str(pebble.ca_bundle),
        cert_dir=cert_dir,
        resolvers=(("127.0.0.1", bind.port),),
        nameserver_port=bind.port,
        secret=SECRET,
        propagation_timeout=20.0,
        order_timeout=60.0,
        lease_seconds=60.0,
    )
    return CertSettings(**(values | overrides))


def cert_env_for(env: dict[str, str], bind: Bind, pebble: Pebble, cert_dir: Path, secret: str = SECRET,
             propagation_timeout: float = 20) -> dict[str, str]:
    """`env` and the variables that point `proxyos-worker` at BIND and Pebble."""
    return dict(
        env,
        PROXYOS_ACME_DIRECTORY=pebble.directory,
        PROXYOS_ACME_CA_BUNDLE=str(pebble.ca_bundle),
        PROXYOS_ACME_EMAIL="admin@example.test",
        PROXYOS_CERT_DIR=str(cert_dir),
        PROXYOS_DNS_RESOLVERS=f"127.0.0.1:{bind.port}",
        PROXYOS_DNS_NAMESERVER_PORT=str(bind.port),
        PROXYOS_DNS_PROPAGATION_TIMEOUT=f"{propagation_timeout:g}",
        PROXYOS_SECRET=secret,
    )
