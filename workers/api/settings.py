"""`proxyos-worker serve`'s own settings, from environment variables, checked at start-up
like the others (an invalid value: one line naming it, exit code 2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from workers.config import ConfigError, env_choice, env_float, env_int, env_str

DEFAULT_LISTEN = "127.0.0.1:8081"


@dataclass(frozen=True)
class ApiSettings:
    host: str
    port: int
    metrics_public: bool  # PROXYOS_METRICS_PUBLIC=1: GET /metrics without a key
    failures_allowed: int  # failed authentications from one address per window before 429
    failure_window_s: float


def _listen(env: Mapping[str, str]) -> tuple[str, int]:
    raw = env_str(env, "PROXYOS_API_LISTEN", DEFAULT_LISTEN)
    host, _, port = raw.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError("PROXYOS_API_LISTEN", raw, "HOST:PORT, e.g. 127.0.0.1:8081, 0.0.0.0:8081 or [::1]:8081")
    return host, int(port)


def load(env: Mapping[str, str]) -> ApiSettings:
    if not env_str(env, "PROXYOS_SECRET"):
        raise ConfigError("PROXYOS_SECRET", "", "the dashboard's secret: ProxyOS stores each API key as "
                          "HMAC-SHA256 of it, so the API cannot check a key without it")
    host, port = _listen(env)
    return ApiSettings(
        host=host,
        port=port,
        metrics_public=env_choice(env, "PROXYOS_METRICS_PUBLIC", "0", ("0", "1")) == "1",
        failures_allowed=env_int(env, "PROXYOS_API_AUTH_FAILURES", 10, minimum=1, maximum=100_000),
        failure_window_s=env_float(env, "PROXYOS_API_AUTH_WINDOW", 60.0, minimum=1.0, maximum=86_400.0),
    )
