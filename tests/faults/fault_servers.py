"""BIND 9 and Pebble for fault tests, reusing the certificate tests' server code
(tests/certs/servers.py), plus the environment and rows that point the workers at them."""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import write_transaction
from db.schema import dns_providers
from db.sql import new_id
from tasks.certs.credentials import encrypt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "certs"))

from servers import Bind, Pebble, start_bind, start_pebble  # noqa: E402

ZONE = "example.test"


@pytest.fixture(scope="module")
def fault_bind(tmp_path_factory) -> Iterator[Bind]:
    server = start_bind(tmp_path_factory.mktemp("bind"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_pebble(tmp_path_factory, fault_bind: Bind) -> Iterator[Pebble]:
    """A Pebble of this module's own, so its log counts only this module's orders."""
    server = start_pebble(tmp_path_factory.mktemp("pebble"), fault_bind.resolver_port)
    yield server
    server.stop()


def new_secret() -> str:
    return "fault-secret-" + secrets.token_hex(16)


def cert_env(env: dict[str, str], bind: Bind, pebble: Pebble, cert_dir: Path, secret: str) -> dict[str, str]:
    return dict(
        env,
        PROXYOS_ACME_DIRECTORY=pebble.directory,
        PROXYOS_ACME_CA_BUNDLE=str(pebble.ca_bundle),
        PROXYOS_ACME_EMAIL="admin@example.test",
        PROXYOS_CERT_DIR=str(cert_dir),
        PROXYOS_DNS_RESOLVERS=f"127.0.0.1:{bind.port}",
        PROXYOS_DNS_NAMESERVER_PORT=str(bind.port),
        PROXYOS_DNS_PROPAGATION_TIMEOUT="30",
        PROXYOS_SECRET=secret,
    )


def add_rfc2136_provider(engine, bind: Bind, secret: str) -> str:
    """An enabled `rfc2136` provider whose credentials (TSIG) are encrypted as the dashboard does."""
    import json
    import time

    provider_id = new_id()
    with write_transaction(engine) as conn:
        conn.execute(dns_providers.insert().values(
            id=provider_id, name="bind", type="rfc2136", enabled=1, created_at=int(time.time()),
            credentials=encrypt(json.dumps(bind.credentials), secret)))
    return provider_id


def pebble_counts(pebble: Pebble) -> dict[str, int]:
    """Orders Pebble created and certificates it issued, from its own log."""
    text = (pebble.ca_bundle.parent / "pebble.log").read_text()
    return {
        "orders": len(re.findall(r"Added order", text)),
        "issued": len(re.findall(r"Issued certificate serial", text)),
    }
