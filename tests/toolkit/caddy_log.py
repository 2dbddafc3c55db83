"""Caddy access-log lines: the JSON its `http.log.access` logger writes, as SCHEMA.md
describes it, one line a request; random ones; appended to a log file."""

from __future__ import annotations

import json
import random
from pathlib import Path


def caddy_line(host: str, ts: float, status: int = 200, duration: float = 0.012, size: int = 1234,
               uri: str = "/", method: str = "GET", client_ip: str = "203.0.113.7",
               user_agent: str = "curl/8.5.0") -> str:
    """One line in the shape of Caddy's `http.log.access` JSON logger, with its newline."""
    return json.dumps({
        "level": "info", "ts": ts, "logger": "http.log.access.log0", "msg": "handled request",
        "request": {
            "remote_ip": client_ip, "remote_port": "52100", "client_ip": client_ip,
            "proto": "HTTP/2.0", "method": method, "host": host, "uri": uri,
            "headers": {"User-Agent": [user_agent], "Accept": ["*/*"]},
            "tls": {"resumed": False, "version": 772, "server_name": host.split(":")[0]},
        },
        "bytes_read": 0, "user_id": "", "duration": duration, "size": size, "status": status,
        "resp_headers": {"Content-Type": ["text/html"]},
    }) + "\n"


def random_lines(rng: random.Random, hosts: list[str], count: int, start: int, span: int) -> list[str]:
    """`count` lines for random `hosts` between `start` and `start + span`, of mixed
    statuses, latencies, sizes and paths."""
    lines = []
    for _ in range(count):
        status = rng.choices([200, 204, 301, 304, 404, 403, 500, 502], [60, 5, 5, 5, 10, 5, 5, 5])[0]
        lines.append(caddy_line(
            rng.choice(hosts), start + rng.random() * span, status=status,
            duration=rng.lognormvariate(-3.5, 1.2), size=rng.randint(0, 50_000),
            uri=f"/p/{rng.randint(1, 999)}",
        ))
    return lines


def append(path: Path, text: str) -> None:
    """Append `text` to the log file at `path` (made, with its folder, if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)


def append_lines(path: Path, host: str, count: int, start_ts: float) -> None:
    """`count` lines for `host`, 10 ms apart from `start_ts`, one in ten a 503."""
    append(path, "".join(caddy_line(host, start_ts + i * 0.01, status=200 if i % 10 else 503, size=512)
                         for i in range(count)))
