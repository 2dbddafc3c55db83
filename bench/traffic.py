"""Benchmark of the traffic jobs on a realistic data set.

N requests (default 5,000,000) over 24 hours across 500 routes, with Zipf-like route
popularity, a realistic status mix (mostly 2xx, some 3xx/4xx, a few 5xx) and log-normal
latencies. In one run it reports:

1. ingest: lines/s of `ingest` reading a Caddy JSON access log of `--ingest-lines` lines
   (default: all N, capped at 1,000,000), counting every line into the `1m` (and rollup)
   buckets as it goes, then cutting each route to its newest 1,000 rows (ProxyOS's ring),
   as the job runs (a catch-up this long is read in a second process) and with the
   reading forced into the job's own process, side by side; and without the cap, into
   the database the later stages use (the rest of the N rows are written straight into
   access_log, numbered as ingest numbers them);
2. aggregate: rows/s of `aggregate` over all N rows (left uncounted, as after an upgrade),
   against one bare
   `INSERT ... SELECT ... GROUP BY` (1m buckets only, no histograms) run by the `sqlite3`
   command-line tool on the same rows; the ratio;
3. incremental: `aggregate` of 10,000 new rows on top of the N, against the same rows
   aggregated on an empty database; the ratio;
4. prune: `prune` deleting `--prune-rows` (default 1,000,000) rows while another process
   commits one row every 10 ms: rows/s and that writer's longest wait, in `--prune-runs`
   runs (default 3, each on the next oldest rows; the median rate and the longest wait of
   all are the figures); against one bare `DELETE` of the next `--prune-rows` rows by the
   `sqlite3` tool, with the same writer.

Prints the figures and one JSON line. The machine is shared: the figures are noisy.

    python -m bench.traffic                # the full 5M-row run
    python -m bench.traffic --rows 200000  # a quick one
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from db.engine import create_engine, write_transaction
from db.migrate import upgrade
from db.schema import routes
from tasks.retention.prune import Pacing, prune
from tasks.retention.rules import DAY_S
from tasks.traffic.aggregate import aggregate
from tasks.traffic.histogram import bin_of
from tasks.traffic.ingest import ingest
from tasks.traffic.logfile import Position, plan
from tasks.traffic.parse_process import worth_a_process
from tasks.traffic.retention import TrafficRetention
from tasks.traffic.retention import rules as traffic_rules
from tasks.traffic.rows import row_id

START = 1_764_000_000 - DAY_S  # the data covers the 24 hours before this "now"
END = START + DAY_S
STATUSES = [200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 429, 500, 502, 503, 504]
STATUS_WEIGHTS = [7000, 300, 400, 100, 200, 300, 800, 100, 150, 100, 400, 50, 40, 30, 20, 10]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148",
          "curl/8.5.0", "Go-http-client/2.0", "okhttp/4.12.0"]


# --- the data set ----------------------------------------------------------------------
class Traffic:
    """Deterministic synthetic requests: route by Zipf-like popularity, time uniform over
    the day (sorted), status from a realistic mix, latency log-normal per route."""

    def __init__(self, n_routes: int, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        self.routes = [f"route{i:04d}xxxxxxxxxxxxx"[:21] for i in range(n_routes)]
        self.hosts = [f"app{i}.example.com" for i in range(n_routes)]
        weights = [1 / (i + 1) ** 1.1 for i in range(n_routes)]
        self.cum = _cumulative(weights)
        self.mu = [self.rng.uniform(2.0, 5.0) for _ in range(n_routes)]  # e^2..e^5 ms

    def requests(self, count: int, start: float, end: float):
        """(route index, ts float, status, latency ms, bytes) in time order."""
        rng, cum, mu = self.rng, self.cum, self.mu
        times = sorted(rng.uniform(start, end) for _ in range(count))
        status_cum = _cumulative(STATUS_WEIGHTS)
        for ts in times:
            r = _pick(cum, rng.random())
            status = STATUSES[_pick(status_cum, rng.random())]
            latency = rng.lognormvariate(mu[r], 0.9)
            size = 0 if status in (204, 304) else int(rng.lognormvariate(8.5, 1.5))
            yield r, ts, status, latency, size


def _cumulative(weights):
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return [c / total for c in out]


def _pick(cum, x):
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def caddy_line(t: Traffic, r: int, ts: float, status: int, latency: float, size: int, i: int) -> str:
    host = t.hosts[r]
    return json.dumps({
        "level": "info", "ts": ts, "logger": "http.log.access.log0", "msg": "handled request",
        "request": {
            "remote_ip": "198.51.100.23", "remote_port": "51234", "client_ip": "198.51.100.23",
            "proto": "HTTP/2.0", "method": "GET", "host": host, "uri": f"/api/items/{i % 9973}",
            "headers": {"User-Agent": [AGENTS[i % len(AGENTS)]], "Accept": ["*/*"],
                        "Accept-Encoding": ["gzip, br"]},
            "tls": {"resumed": False, "version": 772, "cipher_suite": 4865, "proto": "h2",
                    "server_name": host},
        },
        "bytes_read": 0, "user_id": "", "duration": latency / 1000, "size": size,
        "status": status, "resp_headers": {"Server": ["Caddy"], "Content-Type": ["application/json"]},
    }, separators=(",", ":")) + "\n"


def add_routes(engine, t: Traffic) -> None:
    with write_transaction(engine) as conn:
        conn.execute(routes.insert(), [
            {"id": rid, "name": rid, "domain": host, "upstream_type": "http",
             "upstreams": '[{"address": "127.0.0.1:8080"}]', "created_at": START, "updated_at": START}
            for rid, host in zip(t.routes, t.hosts, strict=True)
        ])


def bulk_rows(db: Path, t: Traffic, count: int, start: float, end: float) -> None:
    """Rows straight into access_log, numbered after the last seq, as ingest would."""
    conn = sqlite3.connect(db, isolation_level=None)
    seq = conn.execute("SELECT coalesce(max(value), 0) FROM traffic_state WHERE name = 'ingest_seq'").fetchone()[0]
    first = seq + 1
    sql = ("INSERT INTO access_log (id, route_id, method, path, status_code, latency_ms, bytes_out,"
           " client_ip, user_agent, recorded_at, seq, latency_bin) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
    batch = []
    conn.execute("BEGIN")
    for i, (r, ts, status, latency, size) in enumerate(t.requests(count, start, end)):
        seq += 1
        ms = round(latency)
        batch.append((row_id(seq), t.routes[r], "GET", f"/api/items/{i % 9973}", status, ms, size,
                      "198.51.100.23", AGENTS[i % len(AGENTS)], int(ts), seq, bin_of(ms)))
        if len(batch) >= 50_000:
            conn.executemany(sql, batch)
            batch.clear()
    conn.executemany(sql, batch)
    conn.execute("INSERT INTO traffic_state (name, value) VALUES ('ingest_seq', ?) "
                 "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (seq,))
    conn.execute("INSERT OR IGNORE INTO traffic_state (name, value) VALUES ('aggregated_seq', 0)")
    conn.execute("COMMIT")
    conn.close()
    return first, seq


def uncount(db: Path) -> None:
    """No buckets and the watermark at 0: every row is left for the aggregate job."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript("BEGIN; DELETE FROM traffic_metrics; DELETE FROM traffic_rollups;"
                       " UPDATE traffic_state SET value = 0 WHERE name = 'aggregated_seq';"
                       " UPDATE routes SET last_traffic_at = NULL; COMMIT;")
    conn.close()


def fresh_db(path: Path, t: Traffic):
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    add_routes(engine, t)
    return engine


# --- the concurrent writer (the dashboard's stand-in, its own process) -------------------
def _writer(db: str, ready, stop, results) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = NORMAL")
    waits, writes = [], []
    ready.set()
    n = 0
    while not stop.is_set():
        n += 1
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        waits.append((time.perf_counter() - started) * 1000)  # waiting for the write lock
        conn.execute("INSERT INTO audit_log (id, action, resource_type, created_at) VALUES (?,?,?,?)",
                     (f"bench-{n}-{time.time_ns()}", "bench.tick", "bench", int(time.time())))
        conn.execute("COMMIT")
        writes.append((time.perf_counter() - started) * 1000)  # the whole write
        stop.wait(0.010)
    waits.sort()
    results.put({"writes": len(waits), "max_wait_ms": round(waits[-1], 1) if waits else None,
                 "p99_wait_ms": round(waits[int(len(waits) * 0.99)], 1) if waits else None,
                 "waits_over_50ms": sum(w > 50 for w in waits),
                 "max_write_ms": round(max(writes), 1) if writes else None})


class Writer:
    def __init__(self, db: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop, self.results = ctx.Event(), ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=_writer, args=(str(db), self.ready, self.stop, self.results))

    def __enter__(self):
        self.proc.start()
        self.ready.wait(30)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.result = self.results.get(timeout=60)
        self.proc.join(30)


# --- the bare SQL references -------------------------------------------------------------
BARE_AGGREGATE = """
CREATE TABLE bare_metrics AS SELECT * FROM traffic_metrics WHERE 0;
CREATE UNIQUE INDEX bare_metrics_id ON bare_metrics (id);
CREATE INDEX bare_metrics_route ON bare_metrics (route_id, bucket, bucket_ts);
.timer on
INSERT INTO bare_metrics (id, route_id, bucket, bucket_ts, requests, bytes, errors,
                          status_2xx, status_3xx, status_4xx, status_5xx, latency_sum_ms)
SELECT '1m-' || (recorded_at / 60 * 60000) || '-' || route_id, route_id, '1m',
       recorded_at / 60 * 60000, count(*), sum(coalesce(bytes_out, 0)),
       sum(status_code >= 500), sum(status_code BETWEEN 200 AND 299),
       sum(status_code BETWEEN 300 AND 399), sum(status_code BETWEEN 400 AND 499),
       sum(status_code BETWEEN 500 AND 599), sum(coalesce(latency_ms, 0))
FROM access_log GROUP BY route_id, recorded_at / 60;
"""


def sqlite3_cli(db: Path, script: str) -> float:
    """Run `script` with the sqlite3 tool; the wall time of the whole process."""
    started = time.perf_counter()
    subprocess.run(["sqlite3", str(db)], input=".bail on\n" + script, text=True, check=True,
                   capture_output=True)
    return time.perf_counter() - started


def wal_truncate(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def wal_mb(db: Path) -> float:
    wal = Path(str(db) + "-wal")
    return wal.stat().st_size / 1e6 if wal.exists() else 0.0


def settle_writes() -> None:
    """Flush what the set-up wrote (GBs: the log, the rows, the aggregates) before a timed
    step. Left dirty, the kernel writes it back during the run and throttles every
    writer's write() meanwhile, for tens of ms at a time: a cost of the set-up, not of
    the step measured (seen: a prune started with 2.3 GB dirty saw 72 ms batches)."""
    os.sync()


class GcPauses:
    """The longest pause of Python's garbage collector while the block runs."""

    def __init__(self) -> None:
        self.longest_ms, self._started = 0.0, 0.0

    def _callback(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - self._started) * 1000)

    def __enter__(self):
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self._callback)


class WalPeak:
    """The largest the WAL file gets while the block runs (sampled every 20 ms)."""

    def __init__(self, db: Path) -> None:
        self.db, self.peak_mb = db, 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, wal_mb(self.db))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def prune_run(db: Path, engine, rows: int, number: int) -> dict:
    """`prune` of the `rows` oldest rows while the writer commits every 10 ms."""
    settle_writes()
    cutoff = nth_oldest(db, rows)
    expected = count(db, f"recorded_at < {cutoff}")
    only_access_log = traffic_rules(TrafficRetention(access_log_per_route=0, metrics_days={}))
    wal_before = wal_mb(db)
    with Writer(db) as writer, WalPeak(db) as wal_peak, GcPauses() as gc_pauses:
        started = time.perf_counter()
        summary = prune(engine, only_access_log, now=cutoff + 7 * DAY_S, pacing=Pacing())
        took = time.perf_counter() - started
    assert summary["deleted"] == expected, summary
    wait = writer.result
    print(f"prune run {number}: {expected:,} rows in {took:.1f} s = {expected / took:,.0f} rows/s "
          f"({summary['batches']} batches, longest {summary['longest_batch_ms']} ms, "
          f"{summary['interrupted_batches']} interrupted and done again smaller; WAL {wal_before:.0f} MB "
          f"before, at most {wal_peak.peak_mb:.0f} MB during it ({summary.get('wal_restarts')} restarts, longest "
          f"{summary.get('longest_wal_restart_ms')} ms), final truncation {summary.get('wal_checkpoint')}, "
          f"{wal_mb(db):.0f} MB after); writer: {wait['writes']} commits, longest wait {wait['max_wait_ms']} ms "
          f"for the lock, p99 {wait['p99_wait_ms']} ms, {wait['waits_over_50ms']} over 50 ms; longest whole "
          f"write {wait['max_write_ms']} ms; this process's longest garbage collection {gc_pauses.longest_ms:.1f} ms")
    return {"rows_per_s": round(expected / took), "writer_max_wait_ms": wait["max_wait_ms"],
            "writer_p99_wait_ms": wait["p99_wait_ms"], "writer_max_write_ms": wait["max_write_ms"],
            "longest_batch_ms": summary["longest_batch_ms"], "wal_restarts": summary.get("wal_restarts"),
            "interrupted_batches": summary["interrupted_batches"],
            "wal_max_mb": round(wal_peak.peak_mb, 1)}


def nth_oldest(db: Path, n: int) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT recorded_at FROM access_log ORDER BY recorded_at LIMIT 1 OFFSET ?",
                            (n,)).fetchone()[0]
    finally:
        conn.close()


def count(db: Path, where: str = "1") -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT count(*) FROM access_log WHERE {where}").fetchone()[0]
    finally:
        conn.close()


# --- the run -----------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="requests in the data set")
    parser.add_argument("--routes", type=int, default=500)
    parser.add_argument("--ingest-lines", type=int, default=None,
                        help="lines read from a Caddy log (default: min(rows, 1,000,000))")
    parser.add_argument("--incremental", type=int, default=10_000, help="new rows of each incremental run")
    parser.add_argument("--incremental-runs", type=int, default=9,
                        help="incremental runs, each on top and on an empty table (the median pair counts)")
    parser.add_argument("--prune-rows", type=int, default=None,
                        help="rows deleted by each prune run (default: min(1,000,000, rows / 5))")
    parser.add_argument("--prune-runs", type=int, default=3, help="prune runs, each on the next oldest rows")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    ingest_lines = min(args.rows, args.ingest_lines or 1_000_000)
    prune_rows = args.prune_rows or min(1_000_000, args.rows // 5)
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-traffic-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "proxyos.db"
    for stale in work.glob("proxyos.db*"):
        stale.unlink()
    figures: dict = {"rows": args.rows, "routes": args.routes}
    t = Traffic(args.routes)
    engine = fresh_db(db, t)

    # 1. ingest, the same log twice, each into a new database: as the job runs it (every
    # line counted into the minutes in the transaction that writes it, then each route cut
    # to its newest 1,000 rows), and without the cap (the database the later stages use:
    # they need every row)
    log = work / "access.log"
    with log.open("w") as fh:
        for i, req in enumerate(t.requests(ingest_lines, START, END)):
            fh.write(caddy_line(t, *req, i))
    size_mb = log.stat().st_size / 1e6
    runs = (  # (figure, database, cap, read in a second process: None as the job decides)
        ("ingest_lines_per_s", "capped.db", 1000, None),
        ("ingest_one_process_lines_per_s", "capped-one-process.db", 1000, False),
        ("ingest_no_cap_lines_per_s", None, 0, None),
    )
    for key, name, keep, in_process in runs:
        target = fresh_db(work / name, t) if name else engine
        settle_writes()
        started = time.perf_counter()
        summary = ingest(target, log, keep_per_route=keep, parse_in_process=in_process)
        took = time.perf_counter() - started
        assert summary["inserted"] == summary["counted"] == ingest_lines, summary
        figures[key] = round(ingest_lines / took)
        if keep:
            figures["ingest_trimmed_rows"] = summary["trimmed"]
        cap = f"each route cut to its newest {keep:,} ({summary['trimmed']:,} rows cut)" if keep else "no cap"
        second = in_process if in_process is not None else worth_a_process(plan(log, Position()).segments)
        where = "read in a second process" if second else "read in the job's own process"
        print(f"ingest ({cap}; every line counted into the minutes; {where}): {ingest_lines:,} lines "
              f"({size_mb:.0f} MB) in {took:.1f} s = {ingest_lines / took:,.0f} lines/s (goal 40,000)")
        if name:
            target.dispose()
            for stale in work.glob(name + "*"):
                stale.unlink()
    log.unlink()
    uncount(db)  # set-up for 2.: the aggregate job counts all N rows

    # the rest of the data set, straight into access_log (one big transaction), then
    # shrink the WAL that left behind: it is set-up, not part of what is measured
    bulk_rows(db, t, args.rows - ingest_lines, START, END)
    assert count(db) == args.rows
    wal_truncate(db)

    # 2. aggregate everything, against the bare GROUP BY
    settle_writes()  # each side starts with the set-up's writes on disk
    bare = sqlite3_cli(db, BARE_AGGREGATE)
    settle_writes()
    started = time.perf_counter()
    summary = aggregate(engine)
    took = time.perf_counter() - started
    assert summary["rows"] == args.rows, summary
    ours, theirs = args.rows / took, args.rows / bare
    figures.update(aggregate_rows_per_s=round(ours), bare_sql_rows_per_s=round(theirs),
                   aggregate_vs_bare=round(ours / theirs, 2))
    print(f"aggregate: {args.rows:,} rows in {took:.1f} s = {ours:,.0f} rows/s "
          f"(1m+1h+1d, histograms, {summary['batches']} batches); bare sqlite3 GROUP BY "
          f"(1m only): {bare:.1f} s = {theirs:,.0f} rows/s; ratio {ours / theirs:.2f} (goal >= 0.5)")
    conn = sqlite3.connect(db)
    mismatch = conn.execute(
        "SELECT count(*) FROM bare_metrics b LEFT JOIN traffic_metrics m ON m.id = b.id "
        "WHERE m.requests IS NOT b.requests OR m.bytes IS NOT b.bytes OR m.errors IS NOT b.errors "
        "OR m.latency_sum_ms IS NOT b.latency_sum_ms").fetchone()[0]
    conn.execute("DROP TABLE bare_metrics")
    conn.close()
    assert mismatch == 0, f"{mismatch} 1m buckets differ from the bare SQL's"

    # 3. incremental: 10,000 new rows on top, against the same rows on an empty table;
    # each run takes about 0.1 s, so one pair says little on a shared machine: several
    # pairs (10,000 more rows on top each time, a new empty database each time, the two
    # taking turns to go first), and the median of their ratios
    pairs = []
    for n in range(args.incremental_runs):
        empty_db = work / "empty.db"
        for stale in work.glob("empty.db*"):
            stale.unlink()
        empty = fresh_db(empty_db, t)
        rows_new = Traffic(args.routes, seed=99 + n)
        for target in (db, empty_db):
            rows_new.rng = random.Random(1234 + n)  # the same rows in both databases
            bulk_rows(target, rows_new, args.incremental, END - 300, END)
        took = {}
        for side in (("top", "empty") if n % 2 == 0 else ("empty", "top")):  # neither always first
            started = time.perf_counter()
            done = aggregate(engine if side == "top" else empty)
            took[side] = time.perf_counter() - started
            assert done["rows"] == args.incremental
        empty.dispose()
        pairs.append((took["top"], took["empty"]))
    ratios = sorted(top / alone for top, alone in pairs)
    on_top = sorted(top for top, _ in pairs)[len(pairs) // 2]
    on_empty = sorted(alone for _, alone in pairs)[len(pairs) // 2]
    ratio = ratios[len(ratios) // 2]
    figures.update(incremental_s=round(on_top, 3), incremental_empty_s=round(on_empty, 3),
                   incremental_ratio=round(ratio, 2), incremental_ratios=[round(r, 2) for r in ratios])
    print(f"incremental, {len(pairs)} runs: {args.incremental:,} new rows on top of {args.rows:,}: median "
          f"{on_top * 1000:.0f} ms; on an empty table: median {on_empty * 1000:.0f} ms; ratio, median of the "
          f"pairs {ratio:.2f} (each: {', '.join(f'{r:.2f}' for r in ratios)}; goal <= 2)")

    # 4. prune the oldest rows while a writer commits every 10 ms (several runs, each on
    # the next oldest rows: one run on a shared machine says little); then one bare DELETE
    runs = [prune_run(db, engine, prune_rows, n) for n in range(1, args.prune_runs + 1)]
    rates = sorted(r["rows_per_s"] for r in runs)
    figures.update(prune_runs=runs, prune_rows=prune_rows,
                   prune_rows_per_s=rates[len(rates) // 2],
                   prune_writer_max_wait_ms=max(r["writer_max_wait_ms"] for r in runs),
                   prune_writer_max_write_ms=max(r["writer_max_write_ms"] for r in runs))
    print(f"prune, {len(runs)} runs: median {figures['prune_rows_per_s']:,} rows/s (each: "
          f"{', '.join(f'{r:,}' for r in (x['rows_per_s'] for x in runs))}); the writer's longest wait over all "
          f"runs {figures['prune_writer_max_wait_ms']} ms (goals: >= 100,000 rows/s, < 50 ms)")

    settle_writes()
    cutoff2 = nth_oldest(db, prune_rows)
    expected2 = count(db, f"recorded_at < {cutoff2}")
    with Writer(db) as writer:
        bare = sqlite3_cli(db, f"PRAGMA busy_timeout = 10000;\nDELETE FROM access_log WHERE recorded_at < {cutoff2};\n")
    wait = writer.result
    figures.update(bare_delete_rows_per_s=round(expected2 / bare),
                   bare_delete_writer_max_wait_ms=wait["max_wait_ms"],
                   prune_vs_bare_delete=round(figures["prune_rows_per_s"] / (expected2 / bare), 2))
    print(f"bare DELETE (sqlite3): {expected2:,} rows in {bare:.1f} s = {expected2 / bare:,.0f} rows/s; "
          f"writer's longest wait {wait['max_wait_ms']} ms")
    engine.dispose()
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"bench": "traffic", **figures}, sort_keys=True))


if __name__ == "__main__":
    main()
