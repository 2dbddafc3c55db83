"""Fixtures for the certificate tests: one BIND 9 and one Pebble per test session (on
free loopback ports, torn down afterwards), a PowerDNS and a Caddy where installed, and
the settings and environment that point the worker at them (tests/toolkit)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.certs.settings import CertSettings
from tests.toolkit.certs import cert_env_for, cert_settings
from tests.toolkit.processes import free_port
from tests.toolkit.servers import serving
from tests.toolkit.servers.bind import Bind, start_bind
from tests.toolkit.servers.caddy import Caddy, start_caddy
from tests.toolkit.servers.pebble import Pebble, start_pebble
from tests.toolkit.servers.powerdns import PowerDNS, start_powerdns


@pytest.fixture(scope="session")
def bind(tmp_path_factory) -> Iterator[Bind]:
    # The resolver also forwards pdns.test to the port a PowerDNS may later listen on.
    pdns_port = free_port()
    server = start_bind(tmp_path_factory.mktemp("bind"), forwards={"pdns.test": pdns_port})
    server.pdns_port = pdns_port
    yield from serving(server)


@pytest.fixture(scope="session")
def powerdns(tmp_path_factory, bind: Bind) -> Iterator[PowerDNS]:
    """Debian's pdns-server with its HTTP API, authoritative for pdns.test."""
    if not shutil.which("pdns_server"):
        pytest.skip("pdns-server is not installed (apt-get install pdns-server pdns-backend-sqlite3)")
    yield from serving(start_powerdns(tmp_path_factory.mktemp("pdns"), bind.pdns_port))


@pytest.fixture(scope="session")
def pebble(tmp_path_factory, bind: Bind) -> Iterator[Pebble]:
    yield from serving(start_pebble(tmp_path_factory.mktemp("pebble"), bind.resolver_port))


@pytest.fixture
def settings(tmp_path: Path, bind: Bind, pebble: Pebble) -> CertSettings:
    return cert_settings(tmp_path / "certs", bind, pebble)


@pytest.fixture
def cert_env(tmp_path: Path, worker_env: dict, bind: Bind, pebble: Pebble) -> dict:
    """Environment for `proxyos-worker` subprocesses pointed at BIND and Pebble."""
    return cert_env_for(worker_env, bind, pebble, tmp_path / "certs")


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[Caddy]:
    """Debian's caddy on free loopback ports, started from a ProxyOS-shaped base
    configuration (no routes, no certificates); skipped where caddy is not installed."""
    if not shutil.which("caddy"):
        pytest.skip("caddy is not installed (apt-get install caddy)")
    yield from serving(start_caddy(tmp_path / "caddy"))
