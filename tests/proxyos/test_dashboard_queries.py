"""The dashboard's numbers over what the workers wrote (issue 10's acceptance test).

A seeded generator writes a Caddy JSON access log (five routes, minutes to 100 days back,
some 5xx, an unknown host, a malformed line); the workers' real jobs (`ingest`,
`aggregate`, `prune`, through the job registry and runner, with a fixed clock) fill the
database; then ProxyOS's own read queries (dashboard_queries.py) must show exactly what
the log says. Late lines (hours to days old) arrive after a first ingest+aggregate, and
the figures are read right after the next *ingest* run, with no aggregate in between.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import routes
from tests.toolkit.factories import add_route, ups
from tests.toolkit.processes import free_port
from workers import config
from workers.registry import JobContext, discover
from workers.runner import run_job

from .dashboard_queries import (
    DAY_MS,
    MINUTE_MS,
    Line,
    access_log_page,
    alert_error_rate,
    alert_latency,
    alert_traffic_spike,
    analytics_bandwidth,
    analytics_summary,
    analytics_top_routes,
    counted,
    dashboard_summary,
    health_checks_by_route,
    iso_day,
    js_round,
    latency_trend,
    live_metrics,
    prometheus,
    recent_requests,
    totals,
    traffic_tracker,
)

NOW = 1_764_000_037  # a fixed now: 37 s into a minute, so windows start mid-minute
NOW_MS = NOW * 1000
HOUR = 3600
DAY = 86_400
RETENTION_1M_MS = 90 * DAY_MS  # the contract's default for 1m rows
ACCESS_LOG_PER_ROUTE = 1000  # the contract's default, ProxyOS's ring size

# route id -> domain; weights of the busy routes (r0 gets over 1,000 lines)
ROUTES = {"r0": "shop.example.com", "r1": "api.example.com", "r2": "blog.example.com",
          "r3": "static.example.com", "r4": "quiet.example.com"}
BUSY = {"r0": 50, "r1": 25, "r2": 15, "r3": 10}
STATUSES = [200, 201, 204, 301, 304, 400, 404, 429, 500, 502, 503]
STATUS_WEIGHTS = [55, 3, 4, 5, 5, 3, 10, 2, 6, 4, 3]


def _line(rng: random.Random, route_id: str, ts: float) -> Line:
    return Line(
        route_id, ROUTES[route_id], ts,
        status=rng.choices(STATUSES, STATUS_WEIGHTS)[0],
        size=rng.randint(0, 80_000),
        duration=rng.lognormvariate(-3.2, 1.1),
        uri=f"/p/{rng.randint(1, 5000)}",
        method=rng.choice(["GET", "GET", "GET", "POST"]),
        client_ip=f"203.0.113.{rng.randint(1, 254)}",
    )


def _spread(rng: random.Random, count: int, start: float, end: float,
            weights: dict[str, int] = BUSY) -> list[Line]:
    ids = list(weights)
    return [_line(rng, rng.choices(ids, list(weights.values()))[0], rng.uniform(start, end))
            for _ in range(count)]


def first_part(rng: random.Random) -> list[Line]:
    """What Caddy wrote before the first ingest run, in time order."""
    lines = (
        _spread(rng, 2600, NOW - 3 * DAY, NOW - 15 * 60)  # three busy days
        + _spread(rng, 150, NOW - 15 * 60, NOW - 4 * 60)  # the last quarter-hour
        + _spread(rng, 200, NOW - 100 * DAY, NOW - 3 * DAY, {"r0": 1})  # r0's past, some > 90 days
        + _spread(rng, 60, NOW - 100 * DAY, NOW - 40 * DAY, {"r4": 1})  # a quiet route
        + [Line(None, "unknown.example.net", NOW - 2 * HOUR, 200, 10, 0.001, "/")]
    )
    return sorted(lines, key=lambda ln: ln.ts)


def second_part(rng: random.Random) -> list[Line]:
    """Appended after the first ingest and aggregate: late lines, then the newest minutes
    up to `now` (the current minute included, and r0 in the last 60 s for sure)."""
    late = (
        _spread(rng, 40, NOW - 3 * HOUR, NOW - HOUR)
        + _spread(rng, 20, NOW - 2 * DAY, NOW - DAY)
        + _spread(rng, 10, NOW - 20 * DAY, NOW - 10 * DAY, {"r0": 1})
    )
    newest = sorted(_spread(rng, 120, NOW - 4 * 60, NOW)
                    + _spread(rng, 8, NOW - 30, NOW, {"r0": 1}), key=lambda ln: ln.ts)
    return late + newest


@dataclass
class World:
    engine: sa.Engine
    ctx: JobContext
    log: Path
    lines: list[Line] = field(default_factory=list)
    prometheus_before_prune: dict = field(default_factory=dict)

    def run(self, job: str) -> dict:
        result = run_job(self.ctx, discover()[job])
        assert result.status == "ok", f"{job}: {result.status}: {result.error}"
        return result.summary

    def write(self, lines: list[Line], extra: str = "") -> None:
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write("".join(ln.json() for ln in lines) + extra)
        self.lines.extend(lines)

    def read(self, query, *args, **kwargs):
        with self.engine.connect() as conn:
            return query(conn, *args, **kwargs)


@pytest.fixture
def world(any_engine: sa.Engine, any_url: str, tmp_path: Path) -> Iterator[World]:
    """Log part one -> ingest, aggregate; part two (late + newest) -> ingest; prune."""
    upstreams = ups(f"127.0.0.1:{free_port()}")  # a closed port
    with write_transaction(any_engine) as conn:
        for rid, domain in ROUTES.items():
            add_route(conn, domain, id=rid, upstreams=upstreams, created_at=NOW - 200 * DAY)
    log = tmp_path / "access.log"
    ctx = JobContext(config.load({"PROXYOS_DATABASE_URL": any_url, "PROXYOS_ACCESS_LOG": str(log),
                                  "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/queue.db"}),
                     clock=lambda: float(NOW))
    w = World(any_engine, ctx, log)
    rng = random.Random(20251124)
    w.write(first_part(rng), extra="{not json\n")
    w.run("ingest")
    w.run("aggregate")
    w.write(second_part(rng))
    w.run("ingest")
    w.prometheus_before_prune = w.read(prometheus, NOW_MS)
    w.run("prune")
    yield w
    ctx.close()


def kept(w: World, **kwargs) -> list[Line]:
    """Lines whose 1m bucket the default retention keeps."""
    return counted(w.lines, kept_from_ms=NOW_MS - RETENTION_1M_MS, **kwargs)


# ---------------------------------------------------------------- traffic_metrics readers

def test_dashboard_cards_show_the_last_24_hours(world: World) -> None:
    truth = totals(counted(world.lines, NOW_MS - DAY_MS))
    cards = world.read(dashboard_summary, NOW_MS)
    assert (cards["requests24h"], cards["bytes24h"], cards["errors24h"]) == (
        truth["requests"], truth["bytes"], truth["status_5xx"])
    assert cards["errorRate24h"] == pytest.approx(truth["status_5xx"] / truth["requests"] * 100)
    assert (cards["totalRoutes"], cards["enabledRoutes"]) == (len(ROUTES), len(ROUTES))


@pytest.mark.parametrize("window_minutes", [5, 60, 1440])
def test_route_windows_and_sparklines(world: World, window_minutes: int) -> None:
    since = NOW_MS - window_minutes * MINUTE_MS
    for rid in ROUTES:
        mine = counted(world.lines, since, rid)
        t = totals(mine)
        got = world.read(analytics_summary, rid, window_minutes, NOW_MS)
        assert {k: got[k] for k in ("requests", "bytes", "errors", "latencySumMs", "status2xx",
                                    "status4xx", "status5xx")} == {
            "requests": t["requests"], "bytes": t["bytes"], "errors": t["errors"],
            "latencySumMs": t["latency_sum_ms"], "status2xx": t["status_2xx"],
            "status4xx": t["status_4xx"], "status5xx": t["status_5xx"]}, rid
        assert got["avgLatencyMs"] == (js_round(t["latency_sum_ms"] / t["requests"]) if mine else 0)
        per_minute: dict[int, list[int]] = {}
        for ln in mine:
            b = per_minute.setdefault(ln.minute_ms, [0, 0])
            b[0] += 1
            b[1] += ln.status >= 500
        # one point per minute, oldest first: the sparkline
        assert got["buckets"] == [{"t": m, "requests": n, "errors": e}
                                  for m, (n, e) in sorted(per_minute.items())], rid


def test_top_routes_of_the_last_day(world: World) -> None:
    since = NOW_MS - DAY_MS
    expected = {}
    for rid in ROUTES:
        t = totals(counted(world.lines, since, rid))
        if t["requests"]:
            expected[rid] = {"routeId": rid, "requests": t["requests"], "errors": t["status_5xx"],
                             "bytes": t["bytes"],
                             "avgLatencyMs": js_round(t["latency_sum_ms"] / t["requests"])}
    got = world.read(analytics_top_routes, NOW_MS)
    assert {r["routeId"]: r for r in got} == expected
    assert [r["requests"] for r in got] == sorted((r["requests"] for r in got), reverse=True)


@pytest.mark.parametrize("window_days", [1, 30, 90])
def test_bandwidth_by_day(world: World, window_days: int) -> None:
    since = NOW_MS - window_days * DAY_MS
    for route_id in (None, "r0"):
        mine = kept(world, since_ms=since, route_id=route_id)
        by_day: dict[str, dict] = {}
        for ln in mine:
            d = by_day.setdefault(iso_day(ln.minute_ms), {"bytes": 0, "requests": 0})
            d["bytes"] += ln.size
            d["requests"] += 1
        got = world.read(analytics_bandwidth, NOW_MS, window_days, route_id)
        assert got["totalBytes"] == sum(ln.size for ln in mine)
        assert got["byDay"] == [{"date": d, **v} for d, v in sorted(by_day.items())]
        by_route: dict[str, int] = {}
        for ln in mine:
            by_route[ln.route_id] = by_route.get(ln.route_id, 0) + ln.size
        assert got["byRoute"] == by_route


def test_latency_trend_by_day(world: World) -> None:
    for rid in ("r0", "r1"):
        sums: dict[str, list[int]] = {}
        for ln in counted(world.lines, NOW_MS - 30 * DAY_MS, rid):
            s = sums.setdefault(iso_day(ln.minute_ms), [0, 0])
            s[0] += ln.latency_ms
            s[1] += 1
        assert world.read(latency_trend, rid, NOW_MS) == [
            {"date": d, "avgMs": js_round(s / n), "requests": n} for d, (s, n) in sorted(sums.items())]


def test_alert_windows_include_the_newest_minute_right_after_ingest(world: World) -> None:
    """evaluator.ts reads the last 5 minutes (error rate, latency) and 60 s (traffic spike)
    of 1m buckets: the figures must be complete after an ingest run, without aggregate."""
    five = NOW_MS - 5 * MINUTE_MS
    current_minute = NOW_MS - NOW_MS % MINUTE_MS
    for rid in BUSY:
        t = totals(counted(world.lines, five, rid))
        assert world.read(alert_error_rate, rid, NOW_MS) == {
            "requests": t["requests"], "errors": t["errors"] + t["status_5xx"],
            "pct": (t["errors"] + t["status_5xx"]) / t["requests"] * 100 if t["requests"] else None}, rid
        assert world.read(alert_latency, rid, NOW_MS) == {
            "requests": t["requests"],
            "avg": t["latency_sum_ms"] / t["requests"] if t["requests"] else None}, rid
        spike = counted(world.lines, NOW_MS - MINUTE_MS, rid)
        assert all(ln.minute_ms == current_minute for ln in spike)
        assert world.read(alert_traffic_spike, rid, NOW_MS) == len(spike), rid
    assert world.read(alert_traffic_spike, "r0", NOW_MS) >= 8  # the test really has a current minute


def test_traffic_tracker_and_last_traffic_at(world: World) -> None:
    newest: dict[str, Line] = {}
    for ln in counted(world.lines):
        if ln.route_id not in newest or ln.ts > newest[ln.route_id].ts:
            newest[ln.route_id] = ln
    # traffic-tracker.ts: routes with a bucket in the last 35 days get their newest bucket
    assert world.read(traffic_tracker, NOW_MS) == {
        rid: ln.minute_ms // 1000 for rid, ln in newest.items()
        if ln.minute_ms >= NOW_MS - 35 * DAY_MS}
    assert "r4" in newest and "r4" not in world.read(traffic_tracker, NOW_MS)
    world.run("aggregate")  # whichever job keeps it, it is there after both ran
    with world.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(routes.c.id, routes.c.last_traffic_at)).all())
    assert stored == {rid: newest[rid].recorded_at if rid in newest else None for rid in ROUTES}


def test_prometheus_counters_sum_every_row_and_fall_when_1m_rows_are_pruned(world: World) -> None:
    def counters(lines: list[Line]) -> dict:
        out: dict[str, dict] = {}
        for rid in {ln.route_id for ln in lines}:
            t = totals([ln for ln in lines if ln.route_id == rid])
            out[rid] = {"2xx": t["status_2xx"], "4xx": t["status_4xx"], "5xx": t["status_5xx"],
                        "bytes": t["bytes"]}
        return out

    def strip(metrics: dict) -> dict:
        return {rid: {k: v for k, v in m.items() if k != "mean_s"} for rid, m in metrics.items()}

    before, after = world.prometheus_before_prune, world.read(prometheus, NOW_MS)
    assert strip(before) == counters(counted(world.lines))
    assert strip(after) == counters(kept(world))
    pruned = len(counted(world.lines)) - len(kept(world))
    assert pruned > 0 and after["r0"]["bytes"] < before["r0"]["bytes"]  # the counter falls
    for rid in BUSY:
        t = totals(counted(world.lines, NOW_MS - 5 * MINUTE_MS, rid))
        assert after[rid]["mean_s"] == f"{t['latency_sum_ms'] / t['requests'] / 1000:.4f}"


def test_traffic_metrics_holds_only_1m_rows_and_rollups_are_elsewhere(world: World) -> None:
    world.run("aggregate")
    with world.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, route_id, bucket, bucket_ts, requests FROM traffic_metrics")
                            ).mappings().all()
    assert {r["bucket"] for r in rows} == {"1m"}
    assert all(r["id"] == f"1m-{r['bucket_ts']}-{r['route_id']}" for r in rows)
    minutes: dict[tuple, int] = {}
    for ln in kept(world):
        minutes[(ln.route_id, ln.minute_ms)] = minutes.get((ln.route_id, ln.minute_ms), 0) + 1
    assert {(r["route_id"], r["bucket_ts"]): r["requests"] for r in rows} == minutes
    rollups = sa.Table("traffic_rollups", sa.MetaData(), autoload_with=world.engine)
    with world.engine.connect() as conn:
        stored = {(r.route_id, r.bucket, r.bucket_ts): (r.requests, r.bytes, r.errors)
                  for r in conn.execute(sa.select(rollups))}
    expected: dict[tuple, list[int]] = {}
    for ln in counted(world.lines):
        for size, width in (("1h", 3_600_000), ("1d", DAY_MS)):
            t = expected.setdefault((ln.route_id, size, ln.minute_ms - ln.minute_ms % width), [0, 0, 0])
            t[0] += 1
            t[1] += ln.size
            t[2] += ln.status >= 500
    assert stored == {k: tuple(v) for k, v in expected.items()}


def test_figures_do_not_change_when_aggregate_and_prune_run_again(world: World) -> None:
    def figures() -> tuple:
        return (world.read(dashboard_summary, NOW_MS),
                [world.read(analytics_summary, rid, 60, NOW_MS) for rid in ROUTES],
                world.read(analytics_bandwidth, NOW_MS, 90),
                [world.read(alert_error_rate, rid, NOW_MS) for rid in ROUTES],
                world.read(prometheus, NOW_MS))

    first = figures()
    world.run("aggregate")
    world.run("prune")
    world.run("ingest")
    assert figures() == first


# ---------------------------------------------------------------- access_log readers

def _newest(lines: list[Line], n: int) -> list[Line]:
    return sorted(lines, key=lambda ln: -ln.ts)[:n]


def _as_row(ln: Line) -> tuple:
    return (ln.recorded_at, ln.method, ln.uri, ln.status, ln.latency_ms, ln.size, ln.client_ip, ln.agent)


def _row(r: dict) -> tuple:
    return (r["recorded_at"], r["method"], r["path"], r["status_code"], r["latency_ms"], r["bytes_out"],
            r["client_ip"], r["user_agent"])


def _same_rows(got: list[dict], want: list[Line]) -> None:
    """The same requests, newest first; rows within one second may come in any order, and
    at the oldest second only the count of kept rows is fixed."""
    assert [r["recorded_at"] for r in got] == [ln.recorded_at for ln in want]
    if want:
        oldest = want[-1].recorded_at
        assert sorted(_row(r) for r in got if r["recorded_at"] > oldest) == sorted(
            _as_row(ln) for ln in want if ln.recorded_at > oldest)


def test_route_page_reads_the_newest_1000_access_log_rows(world: World) -> None:
    for rid in BUSY:
        mine = counted(world.lines, route_id=rid)
        everything = world.read(recent_requests, rid, None)  # what the page's SELECT reads
        assert len(everything) <= ACCESS_LOG_PER_ROUTE, rid
        _same_rows(everything, _newest(mine, ACCESS_LOG_PER_ROUTE))
        _same_rows(world.read(recent_requests, rid, 25), _newest(mine, 25))  # routes/[id]/page.tsx
        _same_rows(world.read(access_log_page, rid, 200), _newest(mine, 200))  # routes/[id]/logs
    assert len(counted(world.lines, route_id="r0")) > ACCESS_LOG_PER_ROUTE  # the cap was needed


def test_live_metrics_of_the_last_60_seconds(world: World) -> None:
    since_s = (NOW_MS - MINUTE_MS) // 1000
    expected: dict[str, dict] = {}
    for ln in counted(world.lines):
        if ln.recorded_at < since_s:
            continue
        e = expected.setdefault(ln.route_id, {"requests": 0, "errors": 0, "status2xx": 0,
                                              "status4xx": 0, "status5xx": 0})
        e["requests"] += 1
        e["errors"] += ln.status >= 500
        e["status5xx"] += ln.status >= 500
        e["status4xx"] += 400 <= ln.status < 500
        e["status2xx"] += 200 <= ln.status < 400
    assert world.read(live_metrics, NOW_MS) == expected and expected


# ---------------------------------------------------------------- health_checks reader

def test_health_checks_router_reads_the_workers_results(world: World, tmp_path: Path) -> None:
    """healthChecks.ts listByRoute over the on-demand `health` job's rows (a refused port)."""
    ticks = iter(range(NOW, NOW + 1000))
    ctx = JobContext(world.ctx.settings, clock=lambda: float(next(ticks)))
    for _ in range(3):
        assert run_job(ctx, discover()["health"], {"route": "r1"}).status == "ok"
    rows = world.read(health_checks_by_route, "r1")
    ctx.close()
    assert len(rows) == 3
    assert [r["checked_at"] for r in rows] == sorted((r["checked_at"] for r in rows), reverse=True)
    assert all(NOW <= r["checked_at"] < NOW + 1000 for r in rows)  # seconds, from the job's clock
    assert {r["overall_status"] for r in rows} == {"unhealthy"}
    address = json.loads(world.read(lambda c: c.execute(
        sa.select(routes.c.upstreams).where(routes.c.id == "r1")).scalar()))[0]["address"]
    assert all(r["status_code"] is None and address in r["error"] for r in rows)
    assert world.read(health_checks_by_route, "r0") == []
