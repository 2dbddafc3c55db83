"""Benchmark of `GET /metrics`: the cost of one scrape at 1,000 routes, with 1 day and
with 30 days of history, side by side.

Two SQLite databases are filled alike, but for the length of the history: 1,000 routes
(each with a health state, check totals, traffic totals and a certificate), a
stream or two, and then, for every day of history, the `1m` rows of `--busy` routes with
traffic in every minute (the other routes have totals but no recent minutes: a sparse,
realistic fill; 43 million rows for every route at every minute would take this machine
an hour to write), their `1h`/`1d` rollups, 1,000 `access_log` rows for each busy route,
100 `health_checks` rows a route, and `task_runs` of the periodic jobs (ingest every 5 s
only where it found lines, aggregate and caddy-sync every minute, certs and prune hourly,
backup daily). Each database is then scraped `--scrapes` times: the collector and the
text writer (`render`), as the endpoint runs them in its thread; each scrape's elapsed time and
its thread's CPU time (on a machine shared with other work, the elapsed time includes
the waits for a CPU). Side by side, the same scrapes written by prometheus_client's own
`generate_latest` (tests/metrics/test_metrics_exposition.py checks that both write the
same bytes), and, for contrast, ProxyOS's own
way (sum every `traffic_metrics` row per route) on the same data.

    python -m bench.metrics [--routes 1000] [--busy 50] [--days 30] [--scrapes 30]

Prints the figures and one JSON line. Goal: a scrape under 50 ms, the same at 1 and at
30 days.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from db.engine import create_engine
from db.migrate import upgrade
from workers.api.metrics import WorkerCollector, render
from workers.config import load

DAY_S = 86_400
NOW = 1_764_000_000


def fill(path: Path, routes: int, busy: int, days: int, seed: int = 7) -> dict[str, int]:
    """The data set described above, written straight into the migrated file."""
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    ids = [f"route{i:05d}" + "x" * 11 for i in range(routes)]
    db.executemany(
        "INSERT INTO routes (id, name, domain, upstream_type, upstreams, created_at, updated_at, tls_mode,"
        " last_traffic_at) VALUES (?, ?, ?, 'http', '[]', ?, ?, 'dns', ?)",
        [(rid, rid, f"app{i}.example.com", NOW - 400 * DAY_S, NOW - 400 * DAY_S, NOW - 60)
         for i, rid in enumerate(ids)])
    db.executemany(
        "INSERT INTO route_health_state (route_id, status, recent) VALUES (?, ?, 'HHH')",
        [(rid, rng.choice(["healthy", "healthy", "degraded", "unhealthy"])) for rid in ids])
    db.executemany(
        "INSERT INTO health_check_totals (target_type, target_id, result, checks, timed, duration_ms_sum)"
        " VALUES ('route', ?, ?, ?, ?, ?)",
        [(rid, result, n, n, n * 20) for rid in ids for result, n in (("healthy", 80_000), ("unhealthy", 40))])
    db.executemany(
        "INSERT INTO traffic_route_totals (route_id, requests, errors, bytes) VALUES (?, ?, ?, ?)",
        [(rid, 10_000_000, 1_000, 10**11) for rid in ids])
    db.executemany(
        "INSERT INTO certificates (id, domain, source, status, issued_at, expires_at, route_id, created_at,"
        " updated_at, renew_at) VALUES (?, ?, 'dns01', 'active', ?, ?, ?, ?, ?, ?)",
        [(f"cert{i:05d}" + "x" * 12, f"app{i}.example.com", NOW - 30 * DAY_S, NOW + 60 * DAY_S, rid,
          NOW - 30 * DAY_S, NOW - 30 * DAY_S, NOW + 30 * DAY_S) for i, rid in enumerate(ids)])
    counts = {"routes": routes}
    start = NOW - days * DAY_S
    minutes = days * 1440
    metric = ("INSERT INTO {t} (id, route_id, bucket, bucket_ts, requests, bytes, errors, status_2xx,"
              " latency_sum_ms, latency_hist) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, '{{\"20\":5}}')")
    rows = 0
    for rid in ids[:busy]:
        db.executemany(metric.format(t="traffic_metrics"), (
            (f"1m-{(start + m * 60) * 1000}-{rid}", rid, "1m", (start + m * 60) * 1000, 30, 30_000, 30, 600)
            for m in range(minutes)))
        rows += minutes
        db.executemany(metric.format(t="traffic_rollups"), (
            (f"1h-{(start + h * 3600) * 1000}-{rid}", rid, "1h", (start + h * 3600) * 1000, 1800, 1_800_000,
             1800, 36_000) for h in range(days * 24)))
        db.executemany(metric.format(t="traffic_rollups"), (
            (f"1d-{(start + d * DAY_S) * 1000}-{rid}", rid, "1d", (start + d * DAY_S) * 1000, 43_200,
             43_200_000, 43_200, 864_000) for d in range(days)))
    counts["traffic_metrics_1m"] = rows
    seq = 0
    for rid in ids[:busy]:
        db.executemany(
            "INSERT INTO access_log (id, route_id, method, path, status_code, latency_ms, bytes_out,"
            " recorded_at, seq, latency_bin) VALUES (?, ?, 'GET', '/', 200, 20, 1000, ?, ?, 18)",
            ((f"al{seq + i:012d}{rid[:7]}", rid, NOW - 1000 + i, seq + i + 1) for i in range(1000)))
        seq += 1000
    db.execute("INSERT INTO traffic_state (name, value) VALUES ('ingest_seq', ?), ('aggregated_seq', ?)",
               (seq, seq))
    counts["access_log"] = seq
    db.executemany(
        "INSERT INTO health_checks (id, route_id, checked_at, status_code, response_time_ms, overall_status)"
        " VALUES (?, ?, ?, 200, 20, 'healthy')",
        ((f"hc{i:06d}{rid[:12]}", rid, NOW - i * 30) for rid in ids for i in range(100)))
    counts["health_checks"] = routes * 100
    runs = []
    every = {"ingest": 5, "aggregate": 60, "caddy-sync": 60, "certs": 3600, "prune": 3600, "backup": DAY_S}
    for job, period in every.items():
        step = period if job != "ingest" else 60  # ingest: only the ticks that found lines, one a minute
        for t in range(start, NOW, step):
            runs.append((f"{job}-{t}", job, "ok", t, t + 0.2, 200))
    db.executemany(
        "INSERT INTO task_runs (id, job, status, started_at, finished_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?)",
        runs)
    db.executemany(
        "INSERT INTO task_run_totals (job, status, runs, timed, duration_ms_sum, le_1000, last_finished_at)"
        " VALUES (?, 'ok', ?, ?, ?, ?, ?)",
        [(job, 10**6, 10**6, 2 * 10**8, 10**6, NOW - 10) for job in every])
    counts["task_runs"] = len(runs)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("ANALYZE")
    db.close()
    return counts


def library_render(collector: WorkerCollector) -> bytes:
    """The same families written by prometheus_client's own `generate_latest`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def scrape_times(urls: list[str], scrapes: int, writer=render) -> tuple[list[list[float]], list[list[float]],
                                                                        list[int]]:
    """`scrapes` timed renders of each database, taken in turn (1 day, 30 days, 30 days,
    1 day, ...) so that the load of a shared machine falls on both alike: the elapsed
    time and the CPU time of the thread (what the scrape itself cost, without the time
    other processes held the CPU)."""
    collectors, engines, sizes = [], [], []
    for url in urls:
        engine = create_engine(url)
        engines.append(engine)
        collectors.append(WorkerCollector(engine, load({"PROXYOS_DATABASE_URL": url}), clock=lambda: NOW))
        sizes.append(len(writer(collectors[-1])))  # warm: the page cache and the engine's pool
    gc.collect()
    gc.freeze()  # as `serve` does once started: the start-up heap is out of the collector's sight
    times: list[list[float]] = [[] for _ in urls]
    cpu: list[list[float]] = [[] for _ in urls]
    order = list(range(len(urls)))
    for _ in range(scrapes):
        for index in order:
            gc.collect()  # one scrape's garbage is not left for the next one to collect
            started, started_cpu = time.perf_counter(), time.thread_time()
            writer(collectors[index])
            cpu[index].append((time.thread_time() - started_cpu) * 1000)
            times[index].append((time.perf_counter() - started) * 1000)
        order.reverse()  # whichever goes second in a round runs a little slower: take turns
    for engine in engines:
        engine.dispose()
    return times, cpu, sizes


def proxyos_sum_ms(path: Path, repeats: int = 3) -> float:
    """ProxyOS's /api/metrics way: every traffic_metrics row summed per route."""
    db = sqlite3.connect(path)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        db.execute("SELECT route_id, sum(requests), sum(bytes) FROM traffic_metrics GROUP BY route_id").fetchall()
        best = min(best, (time.perf_counter() - started) * 1000)
    db.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--busy", type=int, default=50, help="routes with traffic in every minute")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        paths = {days: Path(tmp) / f"history-{days}d.db" for days in (1, args.days)}
        for days, path in paths.items():
            upgrade(create_engine(f"sqlite:///{path}"))
            started = time.perf_counter()
            counts = fill(path, args.routes, args.busy, days)
            fill_s = time.perf_counter() - started
            results[f"{days}d"] = {**counts, "fill_s": round(fill_s, 1),
                                   "file_mb": round(path.stat().st_size / 2**20, 1),
                                   "proxyos_sum_ms": round(proxyos_sum_ms(path), 1)}
            print(f"filled {days} d in {fill_s:.1f} s: {counts}", flush=True)
        urls = [f"sqlite:///{path}" for path in paths.values()]
        times, cpu, sizes = scrape_times(urls, args.scrapes)
        library, _, _ = scrape_times(urls, args.scrapes, writer=library_render)
        for days, found, spent, size, theirs in zip(paths, times, cpu, sizes, library, strict=True):
            results[f"{days}d"].update(scrape_median_ms=round(statistics.median(found), 2),
                                       scrape_min_ms=round(min(found), 2), scrape_max_ms=round(max(found), 2),
                                       scrape_cpu_median_ms=round(statistics.median(spent), 2),
                                       with_generate_latest_median_ms=round(statistics.median(theirs), 2),
                                       exposition_bytes=size)
    keys = ["traffic_metrics_1m", "task_runs", "file_mb", "scrape_median_ms", "scrape_min_ms", "scrape_max_ms",
            "scrape_cpu_median_ms", "with_generate_latest_median_ms", "exposition_bytes", "proxyos_sum_ms"]
    one, many = results["1d"], results[f"{args.days}d"]
    print(f"\n{'':30} {'1 day':>12} {f'{args.days} days':>12}")
    for key in keys:
        print(f"{key:30} {one[key]:>12} {many[key]:>12}")
    print(f"scrapes: {args.scrapes} each, {args.routes} routes ({args.busy} with traffic every minute); "
          f"goal: under 50 ms, not growing with history")
    print(json.dumps({"bench": "metrics", "routes": args.routes, "busy": args.busy, "scrapes": args.scrapes,
                      "results": results}))


if __name__ == "__main__":
    main()
