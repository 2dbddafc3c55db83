"""The ProxyOS dashboard's read queries, transcribed from its TypeScript source, and the
truth they should show, computed straight from Caddy access-log lines.

Source: dariusvorster/proxyos-app. Each query names the file and function it comes from.
Drizzle turns `gte(col, value)` into `col >= ?`; the reductions after the SELECT are the
dashboard's own JavaScript, in Python. `now_ms` stands for `Date.now()`.

Units, as ProxyOS has them: `traffic_metrics.bucket_ts` in milliseconds;
`access_log.recorded_at` and `routes.last_traffic_at` in seconds (Drizzle's
`mode: 'timestamp'` stores `Math.floor(date.getTime() / 1000)`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tests.toolkit.caddy_log import caddy_line

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def js_round(x: float) -> int:
    """JavaScript's Math.round (halves go up)."""
    return math.floor(x + 0.5)


def iso_day(ms: int) -> str:
    """`new Date(ms).toISOString().slice(0, 10)`."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _rows(conn: Connection, sql: str, **params: object) -> list[dict]:
    return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def _metrics_since(conn: Connection, since_ms: int, route_id: str | None = None) -> list[dict]:
    if route_id is None:
        return _rows(conn, "SELECT * FROM traffic_metrics WHERE bucket_ts >= :since", since=since_ms)
    return _rows(conn, "SELECT * FROM traffic_metrics WHERE route_id = :route AND bucket_ts >= :since",
                 route=route_id, since=since_ms)


# ---------------------------------------------------------------- the queries

def dashboard_summary(conn: Connection, now_ms: int) -> dict:
    """packages/api/src/routers/dashboard.ts, dashboardRouter.summary (the home cards)."""
    routes = _rows(conn, "SELECT id, enabled FROM routes")
    rows = _metrics_since(conn, now_ms - 24 * 60 * 60 * 1000)
    requests = sum(r["requests"] for r in rows)
    errors = sum(r["status_5xx"] for r in rows)  # the card counts status_5xx, not errors
    return {
        "totalRoutes": len(routes),
        "enabledRoutes": sum(1 for r in routes if r["enabled"]),
        "requests24h": requests,
        "bytes24h": sum(r["bytes"] for r in rows),
        "errors24h": errors,
        "errorRate24h": errors / requests * 100 if requests > 0 else 0,
    }


def analytics_summary(conn: Connection, route_id: str, window_minutes: int, now_ms: int) -> dict:
    """packages/api/src/routers/analytics.ts, analyticsRouter.summary: a route's window
    (route page: 60 min) and `buckets`, the sparkline of the analytics page."""
    rows = _metrics_since(conn, now_ms - window_minutes * 60_000, route_id)
    agg = {k: sum(r[c] for r in rows) for k, c in (
        ("requests", "requests"), ("bytes", "bytes"), ("errors", "errors"),
        ("latencySumMs", "latency_sum_ms"), ("status2xx", "status_2xx"),
        ("status4xx", "status_4xx"), ("status5xx", "status_5xx"))}
    agg["avgLatencyMs"] = js_round(agg["latencySumMs"] / agg["requests"]) if agg["requests"] > 0 else 0
    agg["buckets"] = sorted(
        ({"t": r["bucket_ts"], "requests": r["requests"], "errors": r["errors"]} for r in rows),
        key=lambda b: b["t"])
    return agg


def analytics_top_routes(conn: Connection, now_ms: int, window_minutes: int = 1440,
                         limit: int = 10) -> list[dict]:
    """packages/api/src/routers/analytics.ts, analyticsRouter.topRoutes."""
    by_route: dict[str, dict] = {}
    for r in _metrics_since(conn, now_ms - window_minutes * 60_000):
        cur = by_route.setdefault(r["route_id"], {"requests": 0, "errors": 0, "bytes": 0, "latencySum": 0})
        cur["requests"] += r["requests"]
        cur["errors"] += r["status_5xx"]
        cur["bytes"] += r["bytes"]
        cur["latencySum"] += r["latency_sum_ms"]
    out = [{"routeId": rid, "requests": a["requests"], "errors": a["errors"], "bytes": a["bytes"],
            "avgLatencyMs": js_round(a["latencySum"] / a["requests"]) if a["requests"] > 0 else 0}
           for rid, a in by_route.items()]
    return sorted(out, key=lambda x: -x["requests"])[:limit]


def analytics_bandwidth(conn: Connection, now_ms: int, window_days: int = 30,
                        route_id: str | None = None) -> dict:
    """packages/api/src/routers/analytics.ts, analyticsRouter.bandwidth (bytes by UTC day)."""
    rows = _metrics_since(conn, now_ms - window_days * 86_400_000, route_id)
    by_day: dict[str, dict] = {}
    by_route: Counter = Counter()
    for r in rows:
        cur = by_day.setdefault(iso_day(r["bucket_ts"]), {"bytes": 0, "requests": 0})
        cur["bytes"] += r["bytes"]
        cur["requests"] += r["requests"]
        by_route[r["route_id"]] += r["bytes"]
    return {
        "totalBytes": sum(r["bytes"] for r in rows),
        "byDay": [{"date": d, **v} for d, v in sorted(by_day.items())],
        "byRoute": dict(by_route),
    }


def latency_trend(conn: Connection, route_id: str, now_ms: int) -> list[dict]:
    """packages/api/src/intelligence/trend-analyser.ts, getLatencyTrend (the route's SLO
    page, through routers/intelligence.ts getLatencyTrend): `daily`, 30 days."""
    rows = _metrics_since(conn, now_ms - 30 * 86400 * 1000, route_id)
    by_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        day = by_day[iso_day(r["bucket_ts"])]
        day[0] += r["latency_sum_ms"]
        day[1] += r["requests"]
    return [{"date": d, "avgMs": js_round(s / n) if n > 0 else 0, "requests": n}
            for d, (s, n) in sorted(by_day.items())]


def recent_requests(conn: Connection, route_id: str, limit: int | None = 20) -> list[dict]:
    """packages/api/src/routers/analytics.ts, analyticsRouter.recentRequests (the route
    page, apps/web/src/app/routes/[id]/page.tsx, limit 25): reads every access_log row of
    the route, sorts newest first in JavaScript, keeps `limit` (None: what it read)."""
    rows = _rows(conn, "SELECT * FROM access_log WHERE route_id = :route", route=route_id)
    rows.sort(key=lambda r: -r["recorded_at"])
    return rows if limit is None else rows[:limit]


def access_log_page(conn: Connection, route_id: str, limit: int = 100) -> list[dict]:
    """packages/api/src/routers/analytics.ts, analyticsRouter.accessLog (the route's logs
    page, apps/web/src/app/routes/[id]/logs/page.tsx, limit 200)."""
    return _rows(conn, "SELECT * FROM access_log WHERE route_id = :route ORDER BY recorded_at DESC "
                 "LIMIT :limit", route=route_id, limit=limit)


def live_metrics(conn: Connection, now_ms: int) -> dict[str, dict]:
    """packages/api/src/routers/analytics.ts, analyticsRouter.liveMetrics: access_log of the
    last 60 s (`new Date(since)` becomes floor(since / 1000) seconds)."""
    rows = _rows(conn, "SELECT route_id, status_code FROM access_log WHERE recorded_at >= :since",
                 since=(now_ms - 60_000) // 1000)
    out: dict[str, dict] = {}
    for r in rows:
        cur = out.setdefault(r["route_id"], {"requests": 0, "errors": 0, "status2xx": 0,
                                             "status4xx": 0, "status5xx": 0})
        cur["requests"] += 1
        s = r["status_code"] or 0
        if s >= 500:
            cur["errors"] += 1
            cur["status5xx"] += 1
        elif s >= 400:
            cur["status4xx"] += 1
        elif s >= 200:
            cur["status2xx"] += 1
    return out


def health_checks_by_route(conn: Connection, route_id: str, limit: int = 50) -> list[dict]:
    """packages/api/src/routers/healthChecks.ts, healthChecksRouter.listByRoute."""
    return _rows(conn, "SELECT * FROM health_checks WHERE route_id = :route ORDER BY checked_at DESC "
                 "LIMIT :limit", route=route_id, limit=limit)


def alert_error_rate(conn: Connection, route_id: str, now_ms: int, window_minutes: int = 5) -> dict:
    """packages/alerts/src/evaluator.ts, checkErrorRate: note `errors + status5xx`, so a 5xx
    is counted twice (ProxyOS's collector sets both for every 5xx)."""
    rows = _metrics_since(conn, now_ms - window_minutes * 60_000, route_id)
    requests = sum(r["requests"] for r in rows)
    errors = sum(r["errors"] + r["status_5xx"] for r in rows)
    return {"requests": requests, "errors": errors,
            "pct": errors / requests * 100 if requests else None}


def alert_latency(conn: Connection, route_id: str, now_ms: int, window_minutes: int = 5) -> dict:
    """packages/alerts/src/evaluator.ts, checkLatency (a mean, though the rule says p95)."""
    rows = _metrics_since(conn, now_ms - window_minutes * 60_000, route_id)
    requests = sum(r["requests"] for r in rows)
    latency = sum(r["latency_sum_ms"] for r in rows)
    return {"requests": requests, "avg": latency / requests if requests else None}


def alert_traffic_spike(conn: Connection, route_id: str, now_ms: int) -> int:
    """packages/alerts/src/evaluator.ts, checkTrafficSpike: buckets starting in the last 60 s,
    which with 1m buckets is the current minute only."""
    return sum(r["requests"] for r in _metrics_since(conn, now_ms - 60_000, route_id))


def traffic_tracker(conn: Connection, now_ms: int) -> dict[str, int]:
    """packages/api/src/automation/traffic-tracker.ts, updateLastTrafficAt (every 5 min):
    what it would write to routes.last_traffic_at (seconds) for each route with a bucket
    in the last 35 days: its newest bucket's start."""
    recent = _rows(conn, "SELECT route_id FROM traffic_metrics WHERE bucket_ts >= :since GROUP BY route_id",
                   since=now_ms - 35 * 24 * 60 * 60_000)
    out = {}
    for r in recent:
        latest = _rows(conn, "SELECT bucket_ts FROM traffic_metrics WHERE route_id = :route "
                       "ORDER BY bucket_ts DESC LIMIT 1", route=r["route_id"])
        if latest:
            out[r["route_id"]] = latest[0]["bucket_ts"] // 1000
    return out


def prometheus(conn: Connection, now_ms: int) -> dict[str, dict]:
    """packages/api/src/observability/prometheus.ts, renderPrometheusMetrics (served by
    apps/web/src/app/api/metrics/route.ts): the counters sum *every* traffic_metrics row;
    the mean-duration gauge uses buckets of the last 5 minutes."""
    out: dict[str, dict] = {}
    for r in _rows(conn, "SELECT * FROM traffic_metrics"):
        cur = out.setdefault(r["route_id"], {"2xx": 0, "4xx": 0, "5xx": 0, "bytes": 0})
        cur["2xx"] += r["status_2xx"]
        cur["4xx"] += r["status_4xx"]
        cur["5xx"] += r["status_5xx"]
        cur["bytes"] += r["bytes"]
    recent: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in _metrics_since(conn, now_ms - 5 * 60 * 1000):
        recent[r["route_id"]][0] += r["requests"]
        recent[r["route_id"]][1] += r["latency_sum_ms"]
    for rid, (n, lat) in recent.items():
        out.setdefault(rid, {"2xx": 0, "4xx": 0, "5xx": 0, "bytes": 0})["mean_s"] = (
            f"{lat / n / 1000:.4f}" if n > 0 else "0.0000")
    return out


# ---------------------------------------------------------------- the log and its truth

@dataclass(frozen=True)
class Line:
    """One request as written to Caddy's access log, and what ProxyOS makes of it
    (packages/analytics/src/collector.ts, processEntry)."""

    route_id: str | None  # None: a host no route matches
    host: str
    ts: float
    status: int
    size: int
    duration: float
    uri: str
    method: str = "GET"
    client_ip: str = "198.51.100.23"
    agent: str = "Mozilla/5.0 (test)"

    @property
    def recorded_at(self) -> int:
        return math.floor(self.ts)

    @property
    def latency_ms(self) -> int:
        return js_round(self.duration * 1000)

    @property
    def minute_ms(self) -> int:
        return math.floor(self.ts * 1000 / MINUTE_MS) * MINUTE_MS

    def json(self) -> str:
        return caddy_line(self.host, self.ts, status=self.status, duration=self.duration, size=self.size,
                          uri=self.uri, method=self.method, client_ip=self.client_ip, user_agent=self.agent)


def counted(lines: Iterable[Line], since_ms: int | None = None, route_id: str | None = None,
            kept_from_ms: int | None = None) -> list[Line]:
    """The matched lines whose minute bucket starts at or after `since_ms` (what a reader
    selecting `bucket_ts >= since` sees of ProxyOS's own 1m rows), of one route if named,
    and, with `kept_from_ms`, only those whose minute survives the 1m retention."""
    return [
        ln for ln in lines
        if ln.route_id is not None
        and (route_id is None or ln.route_id == route_id)
        and (since_ms is None or ln.minute_ms >= since_ms)
        and (kept_from_ms is None or ln.minute_ms >= kept_from_ms)
    ]


def totals(lines: Sequence[Line]) -> dict:
    return {
        "requests": len(lines),
        "bytes": sum(ln.size for ln in lines),
        "errors": sum(ln.status >= 500 for ln in lines),
        "status_2xx": sum(200 <= ln.status <= 299 for ln in lines),
        "status_4xx": sum(400 <= ln.status <= 499 for ln in lines),
        "status_5xx": sum(500 <= ln.status <= 599 for ln in lines),
        "latency_sum_ms": sum(ln.latency_ms for ln in lines),
    }
