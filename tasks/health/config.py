"""A route or stream row -> what to probe, or the one `config:` problem that stops it.

A problem here is the user's to fix; it is reported as an `unhealthy` result whose error
starts with `config:` and says what is wrong, and the other routes are checked as usual.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .settings import DEFAULT_STATUS_CODES, MIN_INTERVAL, HealthSettings

CHECKED_TYPES = ("http", "loadbalance", "tcp")
PROTOCOLS = ("http", "https-trusted", "https-insecure")
STREAM_PROTOCOLS = ("tcp", "udp", "tcp+udp")
DEFAULT_INTERVAL = 30


class ConfigProblem(ValueError):
    """What is wrong with a route's or stream's health-check configuration."""


@dataclass(frozen=True)
class Target:
    """One upstream to probe."""

    label: str  # the address as the user wrote it
    host: str
    port: int
    url: str | None = None  # HTTP(S) checks; None for TCP
    verify_tls: bool = True
    sni: str | None = None

    @property
    def tls(self) -> bool:
        return bool(self.url and self.url.startswith("https:"))


@dataclass(frozen=True)
class RouteCheck:
    route_id: str
    name: str
    kind: str  # "http" or "tcp"
    targets: tuple[Target, ...]
    timeout: float
    interval: float
    status_codes: frozenset[int] = DEFAULT_STATUS_CODES
    body_regex: re.Pattern[str] | None = None
    max_response_ms: int | None = None
    problem: str | None = None  # set: the check is a `config:` error, nothing is probed


@dataclass(frozen=True)
class StreamCheck:
    stream_id: str
    name: str
    protocols: tuple[str, ...]  # ("tcp",), ("udp",) or ("tcp", "udp")
    target: Target | None
    timeout: float
    interval: float
    problem: str | None = None

    @property
    def protocol(self) -> str:
        return "+".join(self.protocols) or "?"


def effective_interval(raw: Any) -> float:
    """The route's interval as scheduled: invalid values fall back to the default (the
    check itself reports them), and nothing runs more often than the dispatcher."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return float(DEFAULT_INTERVAL)
    if value < 1:
        return float(DEFAULT_INTERVAL)
    return max(value, MIN_INTERVAL)


def route_check(row: Mapping[str, Any], settings: HealthSettings) -> RouteCheck:
    """The check of one route row (a mapping with the routes table's column names)."""
    interval = effective_interval(row.get("health_check_interval"))
    raw = row.get("health_check_interval")
    configured = float(raw) if isinstance(raw, int | float) and raw >= 1 else interval
    timeout = min(settings.timeout, configured)  # never longer than the route's own interval
    base = {
        "route_id": row["id"],
        "name": row.get("name") or row["id"],
        "timeout": timeout,
        "interval": interval,
    }
    try:
        return _route_check(row, base)
    except ConfigProblem as problem:
        return RouteCheck(kind="http", targets=(), problem=f"config: {problem}", **base)


def _route_check(row: Mapping[str, Any], base: dict) -> RouteCheck:
    raw_interval = row.get("health_check_interval")
    if not isinstance(raw_interval, int) or raw_interval < 1:
        raise ConfigProblem(
            f"health_check_interval must be a whole number of seconds >= 1, got {raw_interval!r}"
        )
    upstream_type = row.get("upstream_type")
    if upstream_type not in CHECKED_TYPES:
        raise ConfigProblem(
            f"upstream_type {upstream_type!r} has no upstream to check "
            f"(checked types: {', '.join(CHECKED_TYPES)})"
        )
    protocol = row.get("upstream_protocol") or "http"
    if protocol not in PROTOCOLS:
        raise ConfigProblem(f"upstream_protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    entries = parse_upstreams(row.get("upstreams"))
    skip_verify = bool(row.get("skip_tls_verify")) or protocol == "https-insecure"
    sni = (row.get("upstream_sni") or "").strip() or None
    if upstream_type == "tcp":
        targets = tuple(_tcp_target(n, address) for n, (address, _) in enumerate(entries, 1))
        return RouteCheck(kind="tcp", targets=targets, **base)
    path = row.get("health_check_path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    targets = tuple(
        _http_target(n, address, protocol, path, verify=not (skip_verify or entry_skip), sni=sni)
        for n, (address, entry_skip) in enumerate(entries, 1)
    )
    return RouteCheck(
        kind="http",
        targets=targets,
        status_codes=parse_status_codes(row.get("health_check_status_codes")),
        body_regex=parse_regex(row.get("health_check_body_regex")),
        max_response_ms=_max_response_ms(row.get("health_check_max_response_ms")),
        **base,
    )


def parse_upstreams(raw: Any) -> list[tuple[str, bool]]:
    """`routes.upstreams` -> [(address, skipVerify)]."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ConfigProblem("upstreams is empty: add at least one upstream address")
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise ConfigProblem(
            f"upstreams is not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None
    if not isinstance(value, list):
        raise ConfigProblem(
            f'upstreams must be a JSON list of {{"address": ...}} objects, got {type(value).__name__}'
        )
    if not value:
        raise ConfigProblem("upstreams is an empty list: add at least one upstream address")
    entries = []
    for number, item in enumerate(value, 1):
        if isinstance(item, str):
            address, skip = item, False
        elif isinstance(item, dict):
            address, skip = item.get("address"), bool(item.get("skipVerify"))
        else:
            raise ConfigProblem(
                f"upstream {number} must be an object with an address, got {json.dumps(item)}"
            )
        if not isinstance(address, str) or not address.strip():
            raise ConfigProblem(f"upstream {number} has no address")
        entries.append((address.strip(), skip))
    return entries


def parse_status_codes(raw: Any) -> frozenset[int]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_STATUS_CODES
    shown = raw if len(str(raw)) <= 60 else str(raw)[:57] + "..."
    problem = ConfigProblem(
        f"health_check_status_codes must be a JSON list of HTTP status codes "
        f"(100-599), e.g. [200, 204]; got {shown}"
    )
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise problem from None
    if not isinstance(value, list) or not value:
        raise problem
    if not all(isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in value):
        raise problem
    return frozenset(value)


def parse_regex(raw: Any) -> re.Pattern[str] | None:
    if raw is None or raw == "":
        return None
    try:
        return re.compile(raw)
    except (re.error, TypeError) as exc:
        raise ConfigProblem(
            f"health_check_body_regex {raw!r} is not a valid regular expression ({exc})"
        ) from None


def _max_response_ms(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise ConfigProblem(
            f"health_check_max_response_ms must be a positive whole number of ms, got {raw!r}"
        )
    return raw


def _split(
    number: int, address: str, default_scheme: str | None
) -> tuple[str | None, str, int | None, str]:
    """(scheme, host, port, rest-of-path) of an address `host:port` or `scheme://host:port/...`."""
    has_scheme = "://" in address
    try:
        parts = urlsplit(address if has_scheme else f"//{address}")
        port = parts.port
    except ValueError as exc:
        raise ConfigProblem(
            f"upstream {number} address {safe_label(address)!r} is not host:port ({exc})"
        ) from None
    if not parts.hostname:
        raise ConfigProblem(f"upstream {number} address {safe_label(address)!r} has no host name")
    scheme = parts.scheme.lower() if has_scheme else default_scheme
    return scheme, parts.hostname, port, parts.path.rstrip("/")


def safe_label(address: str) -> str:
    """The address as shown in results: without any `user:password@` part."""
    scheme, sep, rest = address.rpartition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{path}"


def _http_target(
    number: int, address: str, protocol: str, path: str, verify: bool, sni: str | None
) -> Target:
    scheme, host, port, prefix = _split(
        number, address, "https" if protocol.startswith("https") else "http"
    )
    if scheme not in ("http", "https"):
        raise ConfigProblem(
            f"upstream {number} address {safe_label(address)!r} has scheme {scheme!r}; use http or https"
        )
    port = port or (443 if scheme == "https" else 80)
    netloc = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{netloc}:{port}{prefix}{path}"
    return Target(
        label=safe_label(address),
        host=host,
        port=port,
        url=url,
        verify_tls=verify,
        sni=sni if scheme == "https" else None,
    )


def _tcp_target(number: int, address: str) -> Target:
    scheme, host, port, _ = _split(number, address, None)
    if port is None:
        defaults = {"http": 80, "https": 443}
        if scheme not in defaults:
            raise ConfigProblem(
                f"upstream {number} address {safe_label(address)!r} needs a port (host:port)"
            )
        port = defaults[scheme]
    return Target(label=safe_label(address), host=host, port=port)


def stream_check(row: Mapping[str, Any], settings: HealthSettings) -> StreamCheck:
    interval = max(settings.stream_interval, MIN_INTERVAL)
    base = {
        "stream_id": row["id"],
        "name": f"port {row.get('listen_port')}",
        "timeout": min(settings.timeout, interval),
        "interval": interval,
    }
    protocol = row.get("protocol") or "tcp"
    if protocol not in STREAM_PROTOCOLS:
        return StreamCheck(
            protocols=(),
            target=None,
            problem=(f"config: protocol {protocol!r} is not one of {', '.join(STREAM_PROTOCOLS)}"),
            **base,
        )
    host, port = (row.get("upstream_host") or "").strip(), row.get("upstream_port")
    if not host:
        return StreamCheck(
            protocols=tuple(protocol.split("+")),
            target=None,
            problem="config: upstream_host is empty",
            **base,
        )
    if not isinstance(port, int) or not 1 <= port <= 65535:
        return StreamCheck(
            protocols=tuple(protocol.split("+")),
            target=None,
            problem=f"config: upstream_port must be 1-65535, got {port!r}",
            **base,
        )
    host = host.strip("[]")
    label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return StreamCheck(
        protocols=tuple(protocol.split("+")), target=Target(label, host, port), **base
    )
