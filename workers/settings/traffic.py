"""The traffic jobs' settings, from environment variables (checked at start-up)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tasks.traffic.aggregate import DEFAULT_BATCH_ROWS
from tasks.traffic.ingest import DEFAULT_BATCH_LINES, Limits

from ..config import env_float, env_int, env_str
from . import retention

DEFAULT_ACCESS_LOG = "/data/proxyos/access.log"


@dataclass(frozen=True)
class TrafficSettings:
    access_log: Path
    ingest_batch: int
    ingest_limits: Limits
    aggregate_batch: int
    keep_per_route: int  # ProxyOS's ring, kept by ingest as it stores (PROXYOS_RETENTION_ACCESS_LOG_PER_ROUTE)


def load(env: Mapping[str, str]) -> TrafficSettings:
    return TrafficSettings(
        access_log=Path(env_str(env, "PROXYOS_ACCESS_LOG", DEFAULT_ACCESS_LOG)),
        ingest_batch=env_int(env, "PROXYOS_TRAFFIC_INGEST_BATCH", DEFAULT_BATCH_LINES, minimum=1, maximum=10**6),
        ingest_limits=Limits(
            bytes=env_int(env, "PROXYOS_INGEST_MAX_MB_PER_RUN", Limits.bytes >> 20, minimum=1,
                          maximum=1 << 20) << 20,
            seconds=env_float(env, "PROXYOS_INGEST_MAX_SECONDS_PER_RUN", Limits.seconds, minimum=1.0,
                              maximum=86_400),
        ),
        aggregate_batch=env_int(env, "PROXYOS_TRAFFIC_AGGREGATE_BATCH", DEFAULT_BATCH_ROWS, minimum=1, maximum=10**6),
        keep_per_route=retention.access_log_per_route(env),
    )
