"""Fixtures for fault tests: a private PostgreSQL server that a test may stop and start."""

from __future__ import annotations

import pytest

from processes import PostgresServer


@pytest.fixture
def private_postgres():
    try:
        server = PostgresServer()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot run a private PostgreSQL server here: {exc}")
    yield server
    server.close()
