"""The health checker's environment variables (see docs/health.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks.health.settings import HealthSettings

from ..config import ConfigError, env_float, env_int, env_str


def load(env: Mapping[str, str]) -> HealthSettings:
    """Read and check the PROXYOS_HEALTH_* variables, each within its range; raises
    ConfigError (one line naming the variable and the range)."""
    ca_file = env_str(env, "PROXYOS_HEALTH_CA_FILE")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(
            "PROXYOS_HEALTH_CA_FILE", ca_file, "a readable PEM file of CA certificates"
        )
    return HealthSettings(
        timeout=env_float(env, "PROXYOS_HEALTH_TIMEOUT", 5.0, minimum=0.1, maximum=3600),
        rise=env_int(env, "PROXYOS_HEALTH_RISE", 2, minimum=1, maximum=100),
        fall=env_int(env, "PROXYOS_HEALTH_FALL", 3, minimum=1, maximum=100),
        fast_interval=env_float(env, "PROXYOS_HEALTH_FAST_INTERVAL", 5.0, minimum=0.0, maximum=86_400),
        stream_interval=env_float(env, "PROXYOS_HEALTH_STREAM_INTERVAL", 30.0, minimum=5.0, maximum=86_400),
        concurrency=env_int(env, "PROXYOS_HEALTH_CONCURRENCY", 256, minimum=1, maximum=10_000),
        batch_size=env_int(env, "PROXYOS_HEALTH_BATCH_SIZE", 2000, minimum=1, maximum=100_000),
        ca_file=ca_file,
    )
