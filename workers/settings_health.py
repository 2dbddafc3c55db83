"""The health checker's environment variables (see docs/health.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from tasks.health.settings import HealthSettings

from .config import ConfigError, env_float, env_int, env_str


def _ranged(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    read: Callable[..., float],
) -> float:
    """A number from `low` to `high`; anything else (infinities and NaN too) is one
    ConfigError naming the variable and the range."""
    try:
        value = read(env, name, default, minimum=low)
    except ConfigError:
        value = None
    if value is None or not low <= value <= high:
        what = "a whole number" if read is env_int else "a number"
        raise ConfigError(name, env_str(env, name) or "", f"{what} from {low:g} to {high:g}")
    return value


def health_settings(env: Mapping[str, str]) -> HealthSettings:
    """Read and check the PROXYOS_HEALTH_* variables; raises ConfigError."""
    ca_file = env_str(env, "PROXYOS_HEALTH_CA_FILE")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(
            "PROXYOS_HEALTH_CA_FILE", ca_file, "a readable PEM file of CA certificates"
        )
    return HealthSettings(
        timeout=_ranged(env, "PROXYOS_HEALTH_TIMEOUT", 5.0, 0.1, 3600, env_float),
        rise=_ranged(env, "PROXYOS_HEALTH_RISE", 2, 1, 100, env_int),
        fall=_ranged(env, "PROXYOS_HEALTH_FALL", 3, 1, 100, env_int),
        stream_interval=_ranged(env, "PROXYOS_HEALTH_STREAM_INTERVAL", 30.0, 5.0, 86_400, env_float),
        concurrency=_ranged(env, "PROXYOS_HEALTH_CONCURRENCY", 256, 1, 10_000, env_int),
        batch_size=_ranged(env, "PROXYOS_HEALTH_BATCH_SIZE", 2000, 1, 100_000, env_int),
        ca_file=ca_file,
    )
