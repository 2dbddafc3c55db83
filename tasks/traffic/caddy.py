"""One line of Caddy's JSON access log, as the columns of an `access_log` row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

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
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def parse_line(line: bytes | str) -> Request:
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedLine(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(entry, dict):
        raise MalformedLine("not a JSON object")
    request = entry.get("request")
    if not isinstance(request, dict):
        raise MalformedLine("no request object")
    host = request.get("host")
    if not isinstance(host, str) or not host.strip():
        raise MalformedLine("no request.host")
    if "ts" not in entry:
        raise MalformedLine("no ts")
    duration = entry.get("duration")
    latency = None
    if isinstance(duration, int | float) and not isinstance(duration, bool) and duration >= 0:
        latency = round(duration * 1000)
    headers = request.get("headers")
    agent = None
    if isinstance(headers, dict):
        values = headers.get("User-Agent")
        if isinstance(values, list) and values:
            agent = _text(values[0], MAX_USER_AGENT)
    client = request.get("client_ip") or entry.get("client_ip") or request.get("remote_ip")
    return Request(
        host=normalize_host(host),
        recorded_at=_timestamp(entry["ts"]),
        method=_text(request.get("method"), 16),
        path=_text(request.get("uri"), MAX_PATH),
        status_code=_int(entry.get("status")),
        latency_ms=latency,
        bytes_out=_int(entry.get("size")),
        client_ip=_text(client, 64),
        user_agent=agent,
    )
