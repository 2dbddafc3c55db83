"""Fixtures for fault tests: a private PostgreSQL server that a test may stop and start;
a BIND 9 and a Pebble of each test module's own (so Pebble's log counts only that
module's orders)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.toolkit.servers import serving
from tests.toolkit.servers.bind import Bind, start_bind
from tests.toolkit.servers.pebble import Pebble, start_pebble
from tests.toolkit.servers.postgres import start_postgres


@pytest.fixture
def private_postgres():
    try:
        server = start_postgres()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot run a private PostgreSQL server here: {exc}")
    yield server
    server.close()


@pytest.fixture(scope="module")
def fault_bind(tmp_path_factory) -> Iterator[Bind]:
    yield from serving(start_bind(tmp_path_factory.mktemp("bind")))


@pytest.fixture(scope="module")
def fault_pebble(tmp_path_factory, fault_bind: Bind) -> Iterator[Pebble]:
    yield from serving(start_pebble(tmp_path_factory.mktemp("pebble"), fault_bind.resolver_port))
