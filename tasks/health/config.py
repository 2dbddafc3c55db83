"""A route or stream row -> what to probe, or the one `config:` problem that stops it.

A problem here is the user's to fix; it is reported as an `unhealthy` result whose error
starts with `config:` and says what is wrong, and the other routes are checked as usual.
Any value may be in any column (SQLite's type affinity keeps text in an INTEGER column,
and blobs anywhere), so whatever goes wrong turning one row into a check is that row's
`config:` problem, never an exception that stops the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from db.problem import Problem

from .body_regex import BodyRegex, RegexProblem
from .settings import DEFAULT_STATUS_CODES, MAX_INTERVAL, MIN_INTERVAL, HealthSettings

CHECKED_TYPES = ("http", "loadbalance", "tcp")
PROTOCOLS = ("http", "https-trusted", "https-insecure")
STREAM_PROTOCOLS = ("tcp", "udp", "tcp+udp")
DEFAULT_INTERVAL = 30
SHOWN = 60  # characters of a value quoted in a problem
NAME_LIMIT = 200  # characters of a name kept for results

log = logging.getLogger("proxyos.health")


class ConfigProblem(Problem, ValueError):
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
    body_regex: BodyRegex | None = None
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


def cut(text: str) -> str:
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def shown(value: Any) -> str:
    """A value as quoted in a problem: its repr, at most SHOWN characters."""
    if isinstance(value, str | bytes):
        return cut(repr(value[: 2 * SHOWN]))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**SHOWN:
        return "a number too large"
    try:
        return cut(repr(value))
    except (TypeError, ValueError, RecursionError):
        return type(value).__name__


def _whole_seconds(raw: Any) -> int | None:
    """`health_check_interval` when it is usable: a whole number from 1 to MAX_INTERVAL."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= MAX_INTERVAL:
        return raw
    return None


def effective_interval(raw: Any) -> float:
    """The route's interval as scheduled (`schedule._route_interval` says the same in SQL):
    unusable values fall back to the default (the check itself reports them), and nothing
    runs more often than the dispatcher."""
    value = _whole_seconds(raw)
    return float(DEFAULT_INTERVAL) if value is None else max(float(value), MIN_INTERVAL)


def _text(raw: Any, column: str) -> str | None:
    """A text column's value; anything else SQLite let in (a blob) is a problem."""
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return repr(raw)  # what SQLite's TEXT affinity would have stored
    raise ConfigProblem(f"{column} must be text, got {type(raw).__name__}")  # not quoted: may hold a secret


def _unusable(kind: str, exc: Exception) -> str:
    """A problem no rule below foresaw: the item is reported, the others go on."""
    if isinstance(exc, RecursionError):
        return f"config: the {kind}'s health-check settings are nested too deeply to read"
    return f"config: the {kind}'s health-check settings cannot be used ({type(exc).__name__})"


def route_check(row: Mapping[str, Any], settings: HealthSettings) -> RouteCheck:
    """The check of one route row (a mapping with the routes table's column names). Never
    raises: a row that cannot be checked gives a check whose `problem` says why."""
    interval = effective_interval(row.get("health_check_interval"))
    configured = _whole_seconds(row.get("health_check_interval")) or interval
    name = row.get("name")
    base = {
        "route_id": row["id"],
        "name": _name(name) if isinstance(name, str) and name else str(row["id"]),
        "timeout": min(settings.timeout, configured),  # never longer than the route's interval
        "interval": interval,
    }
    try:
        return _route_check(row, base)
    except ConfigProblem as problem:
        return RouteCheck(kind="http", targets=(), problem=f"config: {problem}", **base)
    except Exception as exc:
        log.warning("health: route %s cannot be checked: %s", base["route_id"], type(exc).__name__)
        return RouteCheck(kind="http", targets=(), problem=_unusable("route", exc), **base)


def _name(name: str) -> str:
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 3] + "..."


def _route_check(row: Mapping[str, Any], base: dict) -> RouteCheck:
    raw_interval = row.get("health_check_interval")
    if _whole_seconds(raw_interval) is None:
        raise ConfigProblem(
            f"health_check_interval must be a whole number of seconds from 1 to {MAX_INTERVAL}, "
            f"got {shown(raw_interval)}"
        )
    upstream_type = row.get("upstream_type")
    if upstream_type not in CHECKED_TYPES:
        raise ConfigProblem(
            f"upstream_type {shown(upstream_type)} has no upstream to check "
            f"(checked types: {', '.join(CHECKED_TYPES)})"
        )
    protocol = _text(row.get("upstream_protocol"), "upstream_protocol") or "http"
    if protocol not in PROTOCOLS:
        raise ConfigProblem(f"upstream_protocol {shown(protocol)} is not one of {', '.join(PROTOCOLS)}")
    entries = parse_upstreams(row.get("upstreams"))
    skip_verify = bool(row.get("skip_tls_verify")) or protocol == "https-insecure"
    sni = (_text(row.get("upstream_sni"), "upstream_sni") or "").strip() or None
    if upstream_type == "tcp":
        targets = tuple(_tcp_target(n, address) for n, (address, _) in enumerate(entries, 1))
        return RouteCheck(kind="tcp", targets=targets, **base)
    path = _text(row.get("health_check_path"), "health_check_path") or "/"
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


def _json(raw: str, column: str) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise ConfigProblem(f"{column} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ConfigProblem(f"{column} is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ConfigProblem(f"{column} is not usable JSON ({cut(str(exc))})") from None


def parse_upstreams(raw: Any) -> list[tuple[str, bool]]:
    """`routes.upstreams` -> [(address, skipVerify)]."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ConfigProblem("upstreams is empty: add at least one upstream address")
    value = raw if isinstance(raw, list) else _json(_text(raw, "upstreams"), "upstreams")
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
            # the value is not quoted: an address may carry a user:password@
            raise ConfigProblem(f"upstream {number} must be an object with an address, got {_json_type(item)}")
        if not isinstance(address, str) or not address.strip():
            raise ConfigProblem(f"upstream {number} has no address")
        entries.append((address.strip(), skip))
    return entries


def _json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {list: "a list", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _shown_json(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return type(value).__name__
    return cut(text)


def parse_status_codes(raw: Any) -> frozenset[int]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_STATUS_CODES
    text = raw if isinstance(raw, list) else _text(raw, "health_check_status_codes")
    quoted = cut(text[: 2 * SHOWN] if isinstance(text, str) else _shown_json(text))
    problem = ConfigProblem(
        f"health_check_status_codes must be a JSON list of HTTP status codes "
        f"(100-599), e.g. [200, 204]; got {quoted}"
    )
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except (ValueError, RecursionError):
        raise problem from None
    if not isinstance(value, list) or not value:
        raise problem
    if not all(isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in value):
        raise problem
    return frozenset(value)


def parse_regex(raw: Any) -> BodyRegex | None:
    """`health_check_body_regex`, compiled with RE2 (see body_regex)."""
    pattern = _text(raw, "health_check_body_regex")
    if not pattern:
        return None
    try:
        return BodyRegex(pattern)
    except RegexProblem as problem:
        raise ConfigProblem(f"health_check_body_regex {problem}") from None


def _max_response_ms(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise ConfigProblem(
            f"health_check_max_response_ms must be a positive whole number of ms, got {shown(raw)}"
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
            f"upstream {number} address {shown(safe_label(address))} is not host:port ({cut(str(exc))})"
        ) from None
    if not parts.hostname:
        raise ConfigProblem(f"upstream {number} address {shown(safe_label(address))} has no host name")
    if len(parts.hostname) > 253:
        raise ConfigProblem(
            f"upstream {number} address {shown(safe_label(address))} has a host name longer than 253 characters"
        )
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
            f"upstream {number} address {shown(safe_label(address))} has scheme {shown(scheme)}; use http or https"
        )
    port = port or (443 if scheme == "https" else 80)
    netloc = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{netloc}:{port}{prefix}{path}"
    return Target(
        label=_name(safe_label(address)),
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
                f"upstream {number} address {shown(safe_label(address))} needs a port (host:port)"
            )
        port = defaults[scheme]
    return Target(label=_name(safe_label(address)), host=host, port=port)


def stream_check(row: Mapping[str, Any], settings: HealthSettings) -> StreamCheck:
    """The check of one stream row. Never raises, like `route_check`."""
    interval = max(settings.stream_interval, MIN_INTERVAL)
    base = {
        "stream_id": row["id"],
        "name": _name(f"port {row.get('listen_port')}"),
        "timeout": min(settings.timeout, interval),
        "interval": interval,
    }
    protocol = row.get("protocol") or "tcp"
    if protocol not in STREAM_PROTOCOLS:
        return StreamCheck(
            protocols=(),
            target=None,
            problem=f"config: protocol {shown(protocol)} is not one of {', '.join(STREAM_PROTOCOLS)}",
            **base,
        )
    protocols = tuple(protocol.split("+"))
    try:
        return StreamCheck(protocols=protocols, target=_stream_target(row), **base)
    except ConfigProblem as problem:
        return StreamCheck(protocols=protocols, target=None, problem=f"config: {problem}", **base)
    except Exception as exc:
        log.warning("health: stream %s cannot be checked: %s", base["stream_id"], type(exc).__name__)
        return StreamCheck(protocols=protocols, target=None, problem=_unusable("stream", exc), **base)


def _stream_target(row: Mapping[str, Any]) -> Target:
    host = (_text(row.get("upstream_host"), "upstream_host") or "").strip()
    if not host:
        raise ConfigProblem("upstream_host is empty")
    if len(host) > 253:
        raise ConfigProblem(f"upstream_host {shown(host)} is longer than 253 characters")
    port = row.get("upstream_port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigProblem(f"upstream_port must be 1-65535, got {shown(port)}")
    host = host.strip("[]")
    label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Target(_name(label), host, port)
