"""Helpers of the traffic tests: routes, Caddy log lines, and an independent recount."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import access_log, routes, traffic_metrics, traffic_rollups
from tasks.traffic import histogram, state

NOW = 1_764_000_000  # a fixed "now" (2025-11-24T16:00:00Z), on a whole day


def add_route(engine, route_id: str, domain: str, aliases: list[str] | None = None) -> None:
    with write_transaction(engine) as conn:
        conn.execute(routes.insert().values(
            id=route_id, name=route_id, domain=domain, upstream_type="http",
            upstreams='[{"address": "127.0.0.1:8080"}]',
            aliases=json.dumps(aliases) if aliases is not None else None,
            created_at=NOW, updated_at=NOW,
        ))


def caddy_line(host: str, ts: float, status: int = 200, duration: float = 0.012,
               size: int = 1234, uri: str = "/", method: str = "GET") -> str:
    """One line in the shape of Caddy's `http.log.access` JSON logger."""
    return json.dumps({
        "level": "info", "ts": ts, "logger": "http.log.access.log0", "msg": "handled request",
        "request": {
            "remote_ip": "203.0.113.7", "remote_port": "52100", "client_ip": "203.0.113.7",
            "proto": "HTTP/2.0", "method": method, "host": host, "uri": uri,
            "headers": {"User-Agent": ["curl/8.5.0"], "Accept": ["*/*"]},
            "tls": {"resumed": False, "version": 772, "server_name": host.split(":")[0]},
        },
        "bytes_read": 0, "user_id": "", "duration": duration, "size": size, "status": status,
        "resp_headers": {"Content-Type": ["text/html"]},
    }) + "\n"


def random_lines(rng: random.Random, hosts: list[str], count: int, start: int, span: int) -> list[str]:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)


SIZES_MS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
FIELDS = ("requests", "bytes", "errors", "status_2xx", "status_3xx", "status_4xx",
          "status_5xx", "latency_sum_ms")


def recount(engine) -> dict:
    """Every bucket recomputed in Python from the raw access_log rows that carry a seq."""
    expected: dict = defaultdict(Counter)
    hists: dict = defaultdict(Counter)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(access_log).where(access_log.c.seq.is_not(None))).mappings()
        for r in rows:
            status = r["status_code"] or 0
            for size, width in SIZES_MS.items():
                ts_ms = r["recorded_at"] * 1000
                key = (r["route_id"], size, ts_ms - ts_ms % width)
                c = expected[key]
                c["requests"] += 1
                c["bytes"] += r["bytes_out"] or 0
                c["errors"] += status >= 500
                c["status_2xx"] += 200 <= status <= 299
                c["status_3xx"] += 300 <= status <= 399
                c["status_4xx"] += 400 <= status <= 499
                c["status_5xx"] += 500 <= status <= 599
                c["latency_sum_ms"] += r["latency_ms"] or 0
                if r["latency_ms"] is not None:
                    hists[key][histogram.bin_of(r["latency_ms"])] += 1
    return {k: ({f: v[f] for f in FIELDS}, dict(hists[k])) for k, v in expected.items()}


def stored(engine) -> dict:
    """Every bucket the workers keep: the minutes and the rollups."""
    with engine.connect() as conn:
        rows = [*conn.execute(sa.select(traffic_metrics)).mappings(),
                *conn.execute(sa.select(traffic_rollups)).mappings()]
    return {
        (r["route_id"], r["bucket"], r["bucket_ts"]): (
            {f: r[f] for f in FIELDS}, histogram.decode(r["latency_hist"])
        )
        for r in rows
    }


def count_rows(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def uncount(engine) -> None:
    """Turn what ingest stored into a backlog: no buckets, the watermark back at 0 (as
    after an upgrade from workers that left counting to the aggregate job)."""
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(traffic_metrics))
        conn.execute(sa.delete(traffic_rollups))
        state.compare_and_set(conn, state.AGGREGATED_SEQ, state.read(conn, state.AGGREGATED_SEQ), 0)
