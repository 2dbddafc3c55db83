"""The retention settings (`PROXYOS_RETENTION_*`, `PROXYOS_PRUNE_*`), checked at start-up:
each area's rules and how the prune paces its deletes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tasks.health.retention import HealthRetention
from tasks.health.retention import rules as health_rules
from tasks.retention import run_history
from tasks.retention.prune import MAX_BATCH, Pacing
from tasks.retention.rules import Rule
from tasks.traffic.retention import TrafficRetention
from tasks.traffic.retention import rules as traffic_rules

from ..config import ConfigError, env_float, env_int


@dataclass(frozen=True)
class RetentionSettings:
    traffic: TrafficRetention
    health: HealthRetention
    task_runs_days: float
    pacing: Pacing

    def rules(self) -> list[Rule]:
        """Every area's rules: traffic, health, then the run history."""
        return traffic_rules(self.traffic) + health_rules(self.health) + run_history.rules(self.task_runs_days)


def _days(env: Mapping[str, str], name: str, default: float) -> float:
    return env_float(env, f"PROXYOS_RETENTION_{name}_DAYS", default, minimum=0.0, maximum=36_500)


def access_log_per_route(env: Mapping[str, str]) -> int:
    """ProxyOS's ring: the newest N `access_log` rows per route (0: no cap); ingest keeps it too."""
    return env_int(env, "PROXYOS_RETENTION_ACCESS_LOG_PER_ROUTE", 1000, minimum=0, maximum=10**7)


def load(env: Mapping[str, str]) -> RetentionSettings:
    batch = env_int(env, "PROXYOS_PRUNE_BATCH", MAX_BATCH, minimum=1)
    if batch > MAX_BATCH:
        raise ConfigError("PROXYOS_PRUNE_BATCH", str(batch), f"a whole number from 1 to {MAX_BATCH}")
    return RetentionSettings(
        traffic=TrafficRetention(
            access_log_days=_days(env, "ACCESS_LOG", 7),
            access_log_per_route=access_log_per_route(env),
            metrics_days={
                "1m": _days(env, "METRICS_1M", 90),
                "1h": _days(env, "METRICS_1H", 400),
                "1d": _days(env, "METRICS_1D", 0),
            },
        ),
        health=HealthRetention(
            keep=env_int(env, "PROXYOS_RETENTION_HEALTH_CHECKS_KEEP", 100, minimum=1, maximum=10**7),
            days=_days(env, "HEALTH_CHECKS", 30),
        ),
        task_runs_days=_days(env, "TASK_RUNS", 30),
        pacing=Pacing(
            batch=batch,
            pause_ms=env_float(env, "PROXYOS_PRUNE_PAUSE_MS", 15.0, maximum=60_000),
            checkpoint_rows=env_int(env, "PROXYOS_PRUNE_CHECKPOINT_ROWS", 10_000, maximum=10**9),
        ),
    )
