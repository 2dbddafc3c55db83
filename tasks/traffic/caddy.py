"""One line of Caddy's JSON access log, as the columns of an `access_log` row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import orjson

MAX_PATH = 2048
MAX_USER_AGENT = 512


class MalformedLine(ValueError):
    """A line that is not a Caddy access log entry; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Request:
    host: str  # lower case, without port
    recorded_at: int  # seconds since the epoch
    method: str | None
    path: str | None
    status_code: int | None
    latency_ms: int | None
    bytes_out: int | None
    client_ip: str | None
    user_agent: str | None


@lru_cache(maxsize=4096)
def normalize_host(raw: str) -> str:
    """`Example.COM:8443` -> `example.com`; `[::1]:443` -> `::1`; trailing dot dropped."""
    host = raw.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _timestamp(value: object) -> int:
    if isinstance(value, bool):
        raise MalformedLine("ts is not a time")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            pass
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    raise MalformedLine("ts is not a time")


def _int(value: object) -> int | None:
    kind = type(value)
    return int(value) if kind is int or kind is float else None


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if type(value) is str else None


def parse_line(line: bytes | str) -> Request:
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        why = "not UTF-8" if "utf-8" in str(exc).lower() else "not JSON"
        raise MalformedLine(why) from None
    if type(entry) is not dict:
        raise MalformedLine("not a JSON object")
    request = entry.get("request")
    if type(request) is not dict:
        raise MalformedLine("no request object")
    host = request.get("host")
    if type(host) is not str or not host.strip():
        raise MalformedLine("no request.host")
    ts = entry.get("ts")
    if ts is None:
        raise MalformedLine("no ts")
    recorded_at = int(ts) if type(ts) is float or type(ts) is int else _timestamp(ts)
    duration = entry.get("duration")
    latency = None
    if (type(duration) is float or type(duration) is int) and duration >= 0:
        latency = round(duration * 1000)
    agent = None
    headers = request.get("headers")
    if type(headers) is dict:
        values = headers.get("User-Agent")
        if type(values) is list and values:
            agent = _text(values[0], MAX_USER_AGENT)
    client = request.get("client_ip") or entry.get("client_ip") or request.get("remote_ip")
    return Request(
        normalize_host(host),
        recorded_at,
        _text(request.get("method"), 16),
        _text(request.get("uri"), MAX_PATH),
        _int(entry.get("status")),
        latency,
        _int(entry.get("size")),
        _text(client, 64),
        agent,
    )
