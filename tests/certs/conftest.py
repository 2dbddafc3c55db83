"""Fixtures for the certificate tests: one BIND 9 and one Pebble per test session (on
free loopback ports, torn down afterwards), and per test a migrated database with a DNS
provider row and settings that point the worker at them."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from certs_support import SECRET  # noqa: E402
from servers import Bind, Pebble, PowerDNS, free_port, start_bind, start_pebble, start_powerdns  # noqa: E402

from tasks.certs.settings import CertSettings  # noqa: E402


@pytest.fixture(scope="session")
def bind(tmp_path_factory) -> Iterator[Bind]:
    # The resolver also forwards pdns.test to the port a PowerDNS may later listen on.
    pdns_port = free_port()
    server = start_bind(tmp_path_factory.mktemp("bind"), forwards={"pdns.test": pdns_port})
    server.pdns_port = pdns_port
    yield server
    server.stop()


@pytest.fixture(scope="session")
def powerdns(tmp_path_factory, bind: Bind) -> Iterator[PowerDNS]:
    """Debian's pdns-server with its HTTP API, authoritative for pdns.test."""
    if not shutil.which("pdns_server"):
        pytest.skip("pdns-server is not installed (apt-get install pdns-server pdns-backend-sqlite3)")
    server = start_powerdns(tmp_path_factory.mktemp("pdns"), bind.pdns_port)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pebble(tmp_path_factory, bind: Bind) -> Iterator[Pebble]:
    server = start_pebble(tmp_path_factory.mktemp("pebble"), bind.resolver_port)
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, bind: Bind, pebble: Pebble) -> CertSettings:
    return CertSettings(
        directory=pebble.directory,
        email="admin@example.test",
        ca_bundle=str(pebble.ca_bundle),
        cert_dir=tmp_path / "certs",
        resolvers=(("127.0.0.1", bind.port),),
        nameserver_port=bind.port,
        secret=SECRET,
        propagation_timeout=20.0,
        order_timeout=60.0,
        lease_seconds=60.0,
    )


@pytest.fixture
def cert_env(tmp_path: Path, worker_env: dict, bind: Bind, pebble: Pebble) -> dict:
    """Environment for `proxyos-worker` subprocesses pointed at BIND and Pebble."""
    env = dict(worker_env)
    env.update(
        PROXYOS_ACME_DIRECTORY=pebble.directory,
        PROXYOS_ACME_CA_BUNDLE=str(pebble.ca_bundle),
        PROXYOS_ACME_EMAIL="admin@example.test",
        PROXYOS_CERT_DIR=str(tmp_path / "certs"),
        PROXYOS_DNS_RESOLVERS=f"127.0.0.1:{bind.port}",
        PROXYOS_DNS_NAMESERVER_PORT=str(bind.port),
        PROXYOS_DNS_PROPAGATION_TIMEOUT="20",
        PROXYOS_SECRET=SECRET,
    )
    return env


@pytest.fixture
def caddy(tmp_path: Path):
    """Debian's caddy on free loopback ports, started from a ProxyOS-shaped base
    configuration (no routes, no certificates); skipped where caddy is not installed."""
    if not shutil.which("caddy"):
        pytest.skip("caddy is not installed (apt-get install caddy)")
    from caddy_server import start_caddy

    server = start_caddy(tmp_path / "caddy")
    yield server
    server.stop()
