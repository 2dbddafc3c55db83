"""The traffic jobs' settings, from environment variables (checked at start-up)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tasks.traffic.aggregate import DEFAULT_BATCH_ROWS
from tasks.traffic.ingest import DEFAULT_BATCH_LINES, Limits
from tasks.traffic.prune import MAX_BATCH, Pacing
from tasks.traffic.retention import Retention

from .config import ConfigError, env_float, env_int, env_str

DEFAULT_ACCESS_LOG = "/data/proxyos/access.log"


@dataclass(frozen=True)
class TrafficSettings:
    access_log: Path
    ingest_batch: int
    ingest_limits: Limits
    aggregate_batch: int
    retention: Retention
    pacing: Pacing


def _days(env: Mapping[str, str], name: str, default: float) -> float:
    return env_float(env, f"PROXYOS_RETENTION_{name}_DAYS", default, minimum=0.0, maximum=36_500)


def load(env: Mapping[str, str]) -> TrafficSettings:
    batch = env_int(env, "PROXYOS_PRUNE_BATCH", MAX_BATCH, minimum=1)
    if batch > MAX_BATCH:
        accepted = f"a whole number from 1 to {MAX_BATCH}"
        raise ConfigError("PROXYOS_PRUNE_BATCH", str(batch), accepted)
    retention = Retention(
        access_log_days=_days(env, "ACCESS_LOG", 7),
        access_log_per_route=env_int(env, "PROXYOS_RETENTION_ACCESS_LOG_PER_ROUTE", 1000, minimum=0, maximum=10**7),
        health_keep=env_int(env, "PROXYOS_RETENTION_HEALTH_CHECKS_KEEP", 100, minimum=1, maximum=10**7),
        health_days=_days(env, "HEALTH_CHECKS", 30),
        metrics_days={
            "1m": _days(env, "METRICS_1M", 90),
            "1h": _days(env, "METRICS_1H", 400),
            "1d": _days(env, "METRICS_1D", 0),
        },
        task_runs_days=_days(env, "TASK_RUNS", 30),
    )
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
        retention=retention,
        pacing=Pacing(
            batch=batch,
            pause_ms=env_float(env, "PROXYOS_PRUNE_PAUSE_MS", 15.0, maximum=60_000),
            checkpoint_rows=env_int(env, "PROXYOS_PRUNE_CHECKPOINT_ROWS", 10_000, maximum=10**9),
        ),
    )
