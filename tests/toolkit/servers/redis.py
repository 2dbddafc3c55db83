"""Redis for the tests: a database of a test's own on the server PROXYOS_TEST_REDIS_URL
names, or a `redis-server` of its own that the test may stop and start."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT = "redis://127.0.0.1:6379/15"


def fresh_redis_url(db: int) -> str:
    """PROXYOS_TEST_REDIS_URL (default redis://127.0.0.1:6379/15) with database `db`,
    flushed first; the test is skipped where no Redis answers."""
    import redis

    base = urlsplit(os.environ.get("PROXYOS_TEST_REDIS_URL", DEFAULT))
    url = urlunsplit(base._replace(path=f"/{db}"))
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis server at {base.netloc}: {exc}")
    return url


def start_redis(port: int, directory: Path) -> subprocess.Popen:
    """`redis-server` on 127.0.0.1:`port`, without persistence, once it answers PING."""
    import redis

    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("redis-server did not start")
