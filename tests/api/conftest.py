"""Fixtures of the API tests: the environment of `serve` on SQLite (database and queue
files) and on PostgreSQL + Redis, the same pointed at the certificate servers (BIND 9,
Pebble) of tests/certs, and a server shared by a module's error-case tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from tests.certs.conftest import bind, pebble  # noqa: F401 (fixtures)
from tests.toolkit.certs import cert_env_for
from tests.toolkit.databases import postgres_schema
from tests.toolkit.servers.redis import fresh_redis_url

from .toolkit import ApiServer, serve_env

PG_URL = os.environ.get("PROXYOS_TEST_DATABASE_URL")


def _redis_db() -> int:
    """The Redis database PROXYOS_TEST_REDIS_URL names (15 if it names none): runs given
    different numbers do not flush each other's queues."""
    number = urlsplit(os.environ.get("PROXYOS_TEST_REDIS_URL", "")).path.strip("/")
    return int(number) if number.isdigit() else 15


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis])])
def api_env(request, tmp_path: Path) -> Iterator[dict[str, str]]:
    """`serve`'s environment: SQLite database and queue files, then PostgreSQL + Redis."""
    if request.param == "sqlite":
        yield serve_env(tmp_path, f"sqlite:///{tmp_path / 'proxyos.db'}")
        return
    if not PG_URL:
        pytest.skip("PROXYOS_TEST_DATABASE_URL is not set")
    with postgres_schema(PG_URL) as url:
        yield serve_env(tmp_path, url, fresh_redis_url(_redis_db()))


@pytest.fixture
def cert_api_env(api_env, bind, pebble, tmp_path: Path) -> dict[str, str]:  # noqa: F811 (fixtures)
    """api_env (SQLite, then PostgreSQL + Redis) pointed at BIND 9 and Pebble, as
    tests/certs points the worker; PROXYOS_SECRET is the one add_provider encrypts with."""
    return cert_env_for(api_env, bind, pebble, tmp_path / "certs")


@pytest.fixture
def sqlite_api_env(tmp_path: Path) -> dict[str, str]:
    return serve_env(tmp_path, f"sqlite:///{tmp_path / 'proxyos.db'}")


@pytest.fixture
def db(api_env) -> Iterator[sa.Engine]:
    engine = create_engine(api_env["PROXYOS_DATABASE_URL"])
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Iterator[tuple[ApiServer, sa.Engine, dict[str, str]]]:
    """One server on SQLite for a module's error-case tests; never throttles."""
    tmp = tmp_path_factory.mktemp("api")
    env = serve_env(tmp, f"sqlite:///{tmp / 'proxyos.db'}", PROXYOS_API_AUTH_FAILURES="100000")
    server = ApiServer(env, tmp / "serve.log")
    engine = create_engine(env["PROXYOS_DATABASE_URL"])
    try:
        yield server, engine, env
    finally:
        engine.dispose()
        code = server.stop()
        assert code == 0, server.log()
