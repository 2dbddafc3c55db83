"""Fixtures for the database commands: a migrated database with a few rows, on SQLite
and on PostgreSQL, and the environment to run `proxyos-worker` on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from db_helpers import fill

from db.engine import create_engine
from db.migrate import upgrade

PG_URL = os.environ.get("PROXYOS_TEST_DATABASE_URL")


@pytest.fixture
def filled_url(any_url: str) -> Iterator[str]:
    """A migrated database with two routes: SQLite, then PostgreSQL when configured."""
    engine = create_engine(any_url)
    upgrade(engine)
    fill(engine)
    engine.dispose()
    yield any_url


@pytest.fixture
def db_env(worker_env: dict, filled_url: str) -> dict:
    return dict(worker_env, PROXYOS_DATABASE_URL=filled_url)


@pytest.fixture
def private_umask() -> Iterator[None]:
    """The usual umask (022), under which a file created without care is world-readable."""
    before = os.umask(0o022)
    yield
    os.umask(before)



@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_filled_url(request, tmp_path_factory) -> Iterator[str]:
    """Like `filled_url`, made once per test module: for tests that must change nothing."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('shared') / 'proxyos.db'}"
        schema = None
    else:
        if not PG_URL:
            pytest.skip("PROXYOS_TEST_DATABASE_URL is not set")
        schema = "t_" + uuid.uuid4().hex[:12]
        with sa.create_engine(PG_URL).begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    engine = create_engine(url)
    upgrade(engine)
    fill(engine)
    engine.dispose()
    yield url
    if schema:
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
