"""Fixtures for the database commands: a migrated database with a few rows, on SQLite
and on PostgreSQL, and the environment to run `proxyos-worker` on it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.toolkit.databases import add_watched_rows, migrated, postgres_schema

PG_URL = os.environ.get("PROXYOS_TEST_DATABASE_URL")


@pytest.fixture
def filled_url(any_url: str) -> Iterator[str]:
    """A migrated database with two routes: SQLite, then PostgreSQL when configured."""
    with migrated(any_url) as engine:
        add_watched_rows(engine)
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
        with migrated(url) as engine:
            add_watched_rows(engine)
        yield url
        return
    if not PG_URL:
        pytest.skip("PROXYOS_TEST_DATABASE_URL is not set")
    with postgres_schema(PG_URL) as url:
        with migrated(url) as engine:
            add_watched_rows(engine)
        yield url
