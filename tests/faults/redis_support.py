"""A Redis database of a test's own: PROXYOS_TEST_REDIS_URL (default
redis://127.0.0.1:6379/15) with another database number, flushed first."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT = "redis://127.0.0.1:6379/15"


def fresh_redis_url(db: int) -> str:
    import redis

    base = urlsplit(os.environ.get("PROXYOS_TEST_REDIS_URL", DEFAULT))
    url = urlunsplit(base._replace(path=f"/{db}"))
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis server at {base.netloc}: {exc}")
    return url
