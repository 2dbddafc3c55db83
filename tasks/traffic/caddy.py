"""One line of Caddy's JSON access log, as the columns of an `access_log` row.

Every value is checked at this edge: a number outside what its column (and the sums of
the buckets) can hold, a time outside the accepted window or a host name longer than DNS
allows makes the line malformed, so nothing downstream sees it. Text is cut to its
column's length."""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

import orjson

from db.problem import Problem

MAX_PATH = 2048
MAX_USER_AGENT = 512
MAX_HOST = 253  # the longest DNS name
MAX_STATUS = 999
MAX_BYTES = 1 << 40  # 1 TiB in one response; keeps the buckets' sums far from 2**63
MAX_DURATION_S = 366 * 86400  # a WebSocket may stay open for long; a year is the bound
# The default window for `ts`; ingest narrows it around now (`parse_line`'s arguments).
EARLIEST_TS = 0.0
LATEST_TS = float(1 << 40)


class MalformedLine(Problem, ValueError):
    """A line that is not a Caddy access log entry; the message says what is wrong."""


class Request(NamedTuple):
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


def _seconds(value: object) -> float:
    kind = type(value)
    if kind is float or kind is int:
        return value  # type: ignore[return-value]
    if kind is str:
        try:
            return float(value)  # type: ignore[arg-type]
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()  # type: ignore[union-attr]
        except (ValueError, OverflowError):
            pass
    raise MalformedLine("ts is not a time")


def _number(entry: dict, name: str, low: float, high: float) -> int | float | None:
    """`entry[name]` when it is a number within [low, high]; None when it is absent or
    not a number (the column stays empty); a number outside the range is malformed."""
    value = entry.get(name)
    kind = type(value)
    if kind is not int and kind is not float:
        return None
    if not low <= value <= high:  # NaN fails this too
        raise MalformedLine(f"{name} {value!r} is out of range")
    return value


def parse_line(line: bytes | str, earliest: float = EARLIEST_TS, latest: float = LATEST_TS) -> Request:
    """The request a line records; `MalformedLine` says why a line is not one, or is one
    with a value out of range (its `ts` outside [earliest, latest], say)."""
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
    if len(host) > MAX_HOST + 8:  # room for a port; checked again without it
        raise MalformedLine(f"request.host is longer than {MAX_HOST} characters")
    host = normalize_host(host)
    if len(host) > MAX_HOST:
        raise MalformedLine(f"request.host is longer than {MAX_HOST} characters")
    ts = entry.get("ts")
    if ts is None:
        raise MalformedLine("no ts")
    seconds = _seconds(ts)
    if not earliest <= seconds <= latest:
        raise MalformedLine(f"ts {ts!r} is outside the accepted window"
                            if math.isfinite(seconds) else "ts is not a time")
    status = _number(entry, "status", 0, MAX_STATUS)
    size = _number(entry, "size", 0, MAX_BYTES)
    duration = entry.get("duration")
    latency = None
    if type(duration) is float or type(duration) is int:
        if duration > MAX_DURATION_S or duration != duration:
            raise MalformedLine(f"duration {duration!r} is out of range")
        if duration >= 0:
            latency = round(duration * 1000)
    agent = None
    headers = request.get("headers")
    if type(headers) is dict:
        values = headers.get("User-Agent")
        if type(values) is list and values and type(values[0]) is str:
            agent = values[0][:MAX_USER_AGENT]
    method, uri = request.get("method"), request.get("uri")
    client = request.get("client_ip") or entry.get("client_ip") or request.get("remote_ip")
    return Request(
        host,
        int(seconds),
        method[:16] if type(method) is str else None,
        uri[:MAX_PATH] if type(uri) is str else None,
        None if status is None else int(status),
        latency,
        None if size is None else int(size),
        client[:64] if type(client) is str else None,
        agent,
    )
