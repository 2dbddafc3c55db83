"""Caddy `http.log.access` lines, as SCHEMA.md describes them, for fault tests."""

from __future__ import annotations

import json
from pathlib import Path


def caddy_line(host: str, ts: float, status: int = 200, latency_s: float = 0.012, size: int = 512) -> str:
    return json.dumps({
        "level": "info",
        "ts": ts,
        "logger": "http.log.access",
        "msg": "handled request",
        "request": {
            "remote_ip": "192.0.2.10",
            "client_ip": "192.0.2.10",
            "proto": "HTTP/2.0",
            "method": "GET",
            "host": host,
            "uri": "/index.html",
            "headers": {"User-Agent": ["curl/8.5"]},
        },
        "duration": latency_s,
        "size": size,
        "status": status,
    })


def append_lines(path: Path, host: str, count: int, start_ts: float) -> None:
    with path.open("a") as log:
        for i in range(count):
            log.write(caddy_line(host, start_ts + i * 0.01, status=200 if i % 10 else 503) + "\n")
