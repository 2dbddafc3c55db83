"""Fixtures of the health tests: real upstreams on loopback (tests/toolkit/servers/
upstreams.py; `upstream` is in tests/conftest.py): a second HTTP upstream, one over HTTPS
with a certificate from a test CA, a port that accepts and never answers, a closed port,
a UDP port; short timeouts."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme

from tasks.health.settings import HealthSettings
from tests.toolkit.processes import free_port
from tests.toolkit.servers import serving
from tests.toolkit.servers.upstreams import BlackHole, HttpUpstream, start_blackhole, start_http_upstream


@pytest.fixture
def upstream2() -> Iterator[HttpUpstream]:
    """A second `upstream`."""
    yield from serving(start_http_upstream())


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_upstream(ca: trustme.CA) -> Iterator[HttpUpstream]:
    """`upstream` over HTTPS with a certificate for `localhost`, `127.0.0.1` and
    `backend.test` from the test CA; `sni` lists the names its clients sent."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "backend.test").configure_cert(context)
    server = start_http_upstream(context)
    server.sni = []
    context.sni_callback = lambda _sock, name, _ctx: server.sni.append(name)
    yield from serving(server)


@pytest.fixture
def blackhole() -> Iterator[BlackHole]:
    yield from serving(start_blackhole())


@pytest.fixture
def closed_port() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def udp_listener() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def settings() -> HealthSettings:
    """Short timeouts keep the tests quick; the rules are the same."""
    return HealthSettings(timeout=1.0, udp_wait=0.5, write_delay=0.05)
