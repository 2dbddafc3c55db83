"""The alerts' environment variables (see docs/alerts.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks.alerts.settings import AlertSettings
from tasks.redaction import remember

from ..config import ConfigError, env_float, env_int, env_str


def load(env: Mapping[str, str]) -> AlertSettings:
    """Read and check the PROXYOS_ALERTS_* variables (and PROXYOS_SECRET); ConfigError
    names the variable and what it accepts. Secrets are registered for redaction first."""
    secret, webhook_secret = env_str(env, "PROXYOS_SECRET"), env_str(env, "PROXYOS_ALERTS_WEBHOOK_SECRET")
    remember(secret, webhook_secret)
    ca_file = env_str(env, "PROXYOS_ALERTS_CA_FILE")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError("PROXYOS_ALERTS_CA_FILE", ca_file, "a readable PEM file of CA certificates")
    return AlertSettings(
        secret=secret,
        webhook_secret=webhook_secret,
        timeout=env_float(env, "PROXYOS_ALERTS_TIMEOUT", 10.0, minimum=0.5, maximum=300),
        retry_hours=env_float(env, "PROXYOS_ALERTS_RETRY_HOURS", 24.0, minimum=0.01, maximum=720),
        backoff=env_float(env, "PROXYOS_ALERTS_BACKOFF", 5.0, minimum=0.1, maximum=3600),
        backoff_max=env_float(env, "PROXYOS_ALERTS_BACKOFF_MAX", 1800.0, minimum=0.1, maximum=86_400),
        lease=env_float(env, "PROXYOS_ALERTS_LEASE", 60.0, minimum=2.0, maximum=3600),
        batch=env_int(env, "PROXYOS_ALERTS_BATCH", 50, minimum=1, maximum=10_000),
        ca_file=ca_file,
    )
