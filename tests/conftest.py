"""Shared fixtures: real SQLite files in temporary directories, a fresh PostgreSQL
schema per test when PROXYOS_TEST_DATABASE_URL names a server, the worker's environment
and command line, an HTTP upstream on loopback. What they use is in tests/toolkit."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings

from tests.toolkit.databases import migrated, postgres_schema
from tests.toolkit.processes import run_cli
from tests.toolkit.servers import serving
from tests.toolkit.servers.upstreams import HttpUpstream, start_http_upstream

# Property tests: in CI the same examples every run (each test's own budget), so a run
# fails only on a change; HYPOTHESIS_PROFILE=fuzz draws new ones each run, to look further.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("fuzz", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PG_URL = os.environ.get("PROXYOS_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("PROXYOS_TEST_REDIS_URL")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'proxyos.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections live in a new, empty schema, dropped afterwards."""
    if not PG_URL:
        pytest.skip("PROXYOS_TEST_DATABASE_URL is not set")
    with postgres_schema(PG_URL) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_url(request) -> str:
    """Runs the test once on SQLite and once on PostgreSQL (when configured)."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(name)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[sa.Engine]:
    """A migrated SQLite database in a temporary file."""
    with migrated(sqlite_url) as engine:
        yield engine


@pytest.fixture
def any_engine(any_url: str) -> Iterator[sa.Engine]:
    """A migrated database: SQLite, then PostgreSQL when configured."""
    with migrated(any_url) as engine:
        yield engine


@pytest.fixture
def worker_env(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    """Environment for running `proxyos-worker` as a subprocess on a temporary data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYOS_")}
    env.update(
        PROXYOS_DATABASE_URL=sqlite_url,
        PROXYOS_QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}",
        PROXYOS_BACKUP_DIR=str(tmp_path / "backups"),
        LOG_LEVEL="info",
    )
    return env


@pytest.fixture
def cli():
    """`cli(args, env)` runs `proxyos-worker ARGS` in a new process."""
    return run_cli


@pytest.fixture
def upstream() -> Iterator[HttpUpstream]:
    """An HTTP server on loopback answering as its query string says (200 `ok` by default)."""
    yield from serving(start_http_upstream())


@pytest.fixture
def tmpfs(tmp_path):
    """`tmpfs("2m")` mounts a small real file system (a tmpfs) and returns its path, for
    tests of full and read-only disks; unmounted afterwards. Needs root: skips without."""
    mounted = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=True)
