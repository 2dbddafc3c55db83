"""Benchmark of the health checker: N routes on loopback upstreams, 5% black-holed.

What it measures (in this process; the upstreams run in a separate process):
1. sweep: one on-demand check of every route at once (`run_batch` without due times,
   as `run-once health` does): the raw capacity in checks/s.
2. scheduled: the dispatcher's claim (`claim_due`, every 5 s on the tick, like the
   `health-dispatch` job) fanning batches out to 4 worker threads (like the consumer's
   threads running `health-batch`), each batch probing at the due times, for
   `--duration` seconds after a warm-up of one interval. Huey itself is not in the
   loop: the message carries ids and due times; what runs is the same code.
   Reports checks/s, the cycle time (gap between two checks of one route), p50/p99
   lateness against each route's schedule, time to a result for healthy routes, and CPU
   seconds per 1,000 checks (this process only: probes, scheduling, SQLite writes).
3. reference: ProxyOS's way - one route at a time with `requests`, timeout 10 s, the
   first upstream only - for `--reference-seconds`, then projected to all N routes.
4. hostile regex (`--hostile-regex`, alone): `--hostile-good` good routes due one after
   another over 10 s, and one route whose body regex is catastrophic for a backtracking
   engine (`--hostile-pattern`, default `(a+)+$`, against `--hostile-body` bytes of `a`
   then `b`, or of random `a`s and `b`s with `--hostile-mixed`), due 1 s in, all in one
   batch. Reports how late the good routes' probes began (the longest delay the
   hostile regex caused to other routes) and what the hostile route got, and when.

    python -m bench.health --hostile-regex [--hostile-body 28]

Prints the figures and one JSON line. Figures are noisy on a shared machine.

    python -m bench.health --routes 10000 --interval 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import sqlalchemy as sa

from db.engine import create_engine, write_transaction
from db.migrate import upgrade
from db.schema import routes
from tasks.health.batch import run_batch
from tasks.health.schedule import claim_due, split
from tasks.health.settings import HealthSettings

ROOT = Path(__file__).resolve().parent.parent

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


# --- the upstreams (a separate process) ------------------------------------------------
class _Answer(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(RESPONSE)
            self.transport.close()


class _Hostile(asyncio.Protocol):
    """Answers with a body of `a`s then `b` (catastrophic for `(a+)+$` when backtracking),
    or with `mixed`, random `a`s and `b`s (costly for RE2 on `[ab]*a[ab]{990}c`)."""

    size = 28
    mixed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            if self.mixed:
                rng = random.Random(12)
                body = bytes(b"ab"[rng.getrandbits(1)] for _ in range(self.size))
            else:
                body = b"a" * (self.size - 1) + b"b"
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            self.transport.write(head.encode() + body)
            self.transport.close()


class _Silent(asyncio.Protocol):
    held: list = []

    def connection_made(self, transport) -> None:
        self.held.append(transport)  # accept, never answer


async def _serve(healthy: int, dead: int, hostile_body: int = 0, mixed: int = 0) -> None:
    loop = asyncio.get_running_loop()
    ports = {"healthy": [], "dead": [], "hostile": []}
    _Hostile.size, _Hostile.mixed = max(hostile_body, 1), bool(mixed)
    kinds = (("healthy", healthy, _Answer), ("dead", dead, _Silent), ("hostile", 1, _Hostile))
    for kind, count, factory in kinds:
        for _ in range(count):
            server = await loop.create_server(factory, "127.0.0.1", 0, backlog=4096)
            ports[kind].append(server.sockets[0].getsockname()[1])
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


def start_upstreams(
    healthy: int, dead: int, hostile_body: int = 28, mixed: bool = False
) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        # as a module: run as a file, bench/queue.py would shadow the standard library's queue
        [sys.executable, "-m", "bench.health", "--serve", str(healthy), str(dead), str(hostile_body), str(int(mixed))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, json.loads(proc.stdout.readline())


# --- the database ----------------------------------------------------------------------
def make_routes(engine, count: int, interval: int, ports: dict, dead_pct: float) -> set[str]:
    now = int(time.time())
    dead_every = round(100 / dead_pct) if dead_pct > 0 else 0
    rows, dead_ids = [], set()
    for n in range(count):
        route_id = f"r{n:07d}"
        if dead_every and n % dead_every == dead_every // 2:
            port = ports["dead"][n % len(ports["dead"])]
            dead_ids.add(route_id)
        else:
            port = ports["healthy"][n % len(ports["healthy"])]
        rows.append(
            {
                "id": route_id,
                "name": route_id,
                "domain": f"{route_id}.bench.test",
                "upstream_type": "http",
                "upstreams": json.dumps([{"address": f"127.0.0.1:{port}"}]),
                "health_check_interval": interval,
                "created_at": now,
                "updated_at": now,
            }
        )
    for start in range(0, len(rows), 1000):
        with write_transaction(engine) as conn:
            conn.execute(routes.insert(), rows[start : start + 1000])
    return dead_ids


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pct(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- 1. sweep --------------------------------------------------------------------------
def sweep(engine, settings: HealthSettings) -> dict:
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(routes)).mappings()]
    cpu, started = cpu_seconds(), time.perf_counter()
    report = run_batch(engine, settings, route_rows=rows)
    took = time.perf_counter() - started
    return {
        "checks": len(report.results),
        "seconds": round(took, 2),
        "checks_per_s": round(len(report.results) / took, 1),
        "cpu_s_per_1000": round((cpu_seconds() - cpu) / len(report.results) * 1000, 3),
    }


# --- 2. scheduled ----------------------------------------------------------------------
def scheduled(
    engine,
    settings: HealthSettings,
    count: int,
    interval: int,
    duration: float,
    dead_ids: set[str],
    workers: int,
) -> dict:
    results, lock, stop = [], threading.Lock(), threading.Event()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="batch")
    busy_max = [0]
    running = [0]

    def batch(pairs) -> None:
        with lock:
            running[0] += 1
            busy_max[0] = max(busy_max[0], running[0])
        try:
            report = run_batch(engine, settings, pairs)
            with lock:
                results.extend(report.results)
        finally:
            with lock:
                running[0] -= 1

    dispatch_ms: list[float] = []

    def dispatcher() -> None:
        while not stop.is_set():
            now = time.time()
            tick = now // settings.dispatch_every * settings.dispatch_every
            begun = time.perf_counter()
            claimed = claim_due(engine, settings, now)
            for part in split(claimed, settings.batch_size):
                pool.submit(batch, [(d.target_id, d.due_at) for d in part])
            dispatch_ms.append((time.perf_counter() - begun) * 1000)
            stop.wait(tick + settings.dispatch_every - time.time())

    thread = threading.Thread(target=dispatcher, daemon=True)
    start = time.time()
    thread.start()
    stop.wait(interval)  # warm-up: the first cycle spreads every route over the interval
    window_start, cpu = time.time(), cpu_seconds()
    stop.wait(duration)
    window_end, cpu_used = time.time(), cpu_seconds() - cpu
    stop.set()
    thread.join()
    pool.shutdown(wait=True)
    in_window = [r for r in results if window_start <= r.started_at < window_end]
    late = [r.lateness_ms for r in in_window if r.lateness_ms is not None]
    healthy = [r for r in in_window if r.target_id not in dead_ids]
    by_route: dict[str, list[float]] = {}
    for r in results:
        by_route.setdefault(r.target_id, []).append(r.started_at)
    gaps = [
        b - a
        for times in by_route.values()
        for a, b in zip(sorted(times), sorted(times)[1:], strict=False)
    ]
    return {
        "checks": len(in_window),
        "window_s": round(window_end - window_start, 1),
        "checks_per_s": round(len(in_window) / (window_end - window_start), 1),
        "routes_checked": len({r.target_id for r in results}),
        "cycle_s_mean": round(statistics.mean(gaps), 2) if gaps else None,
        "cycle_s_max": round(max(gaps), 2) if gaps else None,
        "lateness_p50_ms": pct(late, 0.50),
        "lateness_p99_ms": pct(late, 0.99),
        "lateness_max_ms": max(late) if late else None,
        "healthy_result_p99_ms": pct([r.response_time_ms or 0 for r in healthy], 0.99),
        "healthy_not_healthy": sum(1 for r in healthy if r.status != "healthy"),
        "dead_unhealthy": sum(
            1 for r in in_window if r.target_id in dead_ids and r.status == "unhealthy"
        ),
        "cpu_s_per_1000": round(cpu_used / max(len(in_window), 1) * 1000, 3),
        "dispatch_ms_p50": round(pct(dispatch_ms, 0.5), 1),
        "dispatch_ms_max": round(max(dispatch_ms), 1) if dispatch_ms else None,
        "batches_running_max": busy_max[0],
        "elapsed_s": round(time.time() - start, 1),
    }


# --- 2b. through a real consumer ---------------------------------------------------------
def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def consumer(
    db_path: Path, interval: int, duration: float, dead_ids: set[str], workers: int
) -> dict:
    """`proxyos-worker run` (scheduler + Huey on a SQLite queue + the health jobs) in its own
    process; lateness is sampled from each route's state row every 2 s (a row keeps its
    latest check for a whole interval, so no check is missed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYOS_")}
    env.update(
        PROXYOS_DATABASE_URL=f"sqlite:///{db_path}",
        PROXYOS_QUEUE_URL=f"sqlite:///{db_path.parent / 'queue.db'}",
        PROXYOS_BACKUP_DIR=str(db_path.parent / "backups"),
        PROXYOS_ACCESS_LOG=str(db_path.parent / "access.log"),
        LOG_LEVEL="warning",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "run", "--workers", str(workers)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    engine = create_engine(f"sqlite:///{db_path}")
    seen: dict[tuple[str, float], int] = {}
    state = sa.table(
        "route_health_state",
        sa.column("route_id"),
        sa.column("last_checked_at"),
        sa.column("last_lateness_ms"),
    )
    try:
        time.sleep(interval + 10)  # warm-up: the first dispatches, one full interval
        window_start, cpu = time.time(), _process_cpu(worker.pid)
        while time.time() < window_start + duration and worker.poll() is None:
            time.sleep(2)
            with engine.connect() as conn:
                for row in conn.execute(
                    sa.select(state).where(state.c.last_checked_at >= window_start)
                ):
                    if row.last_lateness_ms is not None:
                        seen[(row.route_id, row.last_checked_at)] = row.last_lateness_ms
        window_end, cpu_used = time.time(), _process_cpu(worker.pid) - cpu
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=120)
        engine.dispose()
    late = list(seen.values())
    window = window_end - window_start
    return {
        "checks": len(late),
        "window_s": round(window, 1),
        "checks_per_s": round(len(late) / window, 1),
        "lateness_p50_ms": pct(late, 0.50),
        "lateness_p99_ms": pct(late, 0.99),
        "lateness_max_ms": max(late) if late else None,
        "cpu_s_per_1000": round(cpu_used / max(len(late), 1) * 1000, 3),
        "consumer_errors": err.count("ERROR"),
    }


# --- 3. reference ----------------------------------------------------------------------
def reference(engine, seconds: float) -> dict:
    """ProxyOS's checker: routes one at a time, `requests` with a 10 s timeout, the first
    upstream only; stopped after `seconds` and projected to every route."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(routes.c.upstreams, routes.c.health_check_path).order_by(routes.c.id)
        ).all()
    done, started = 0, time.perf_counter()
    with requests.Session() as session:
        for upstreams, path in rows:
            if time.perf_counter() - started >= seconds:
                break
            first = json.loads(upstreams)[0]["address"]
            with contextlib.suppress(requests.RequestException):
                session.get(
                    f"http://{first}{path}",
                    timeout=10,
                    allow_redirects=False,
                    headers={"Connection": "close"},
                )
            done += 1
    took = time.perf_counter() - started
    rate = done / took
    return {
        "checks": done,
        "seconds": round(took, 1),
        "checks_per_s": round(rate, 1),
        "projected_cycle_s": round(len(rows) / rate, 1),
    }


# --- 4. hostile regex ------------------------------------------------------------------
def hostile_regex(engine, ports: dict, good: int, body: int, pattern: str) -> dict:
    """One batch: `good` routes due every 10/good s from 1 s on, and one route with a
    catastrophic regex due at 1 s. The good routes' lateness is the delay it causes."""
    now = int(time.time())
    rows = [
        {
            "id": f"good{n:04d}",
            "name": f"good{n:04d}",
            "domain": f"good{n:04d}.bench.test",
            "upstream_type": "http",
            "upstreams": json.dumps([{"address": f"127.0.0.1:{ports['healthy'][n % len(ports['healthy'])]}"}]),
            "health_check_body_regex": "ok",
            "created_at": now,
            "updated_at": now,
        }
        for n in range(good)
    ]
    rows.append(
        {
            "id": "hostile",
            "name": "hostile",
            "domain": "hostile.bench.test",
            "upstream_type": "http",
            "upstreams": json.dumps([{"address": f"127.0.0.1:{ports['hostile'][0]}"}]),
            "health_check_body_regex": pattern,
            "created_at": now,
            "updated_at": now,
        }
    )
    with write_transaction(engine) as conn:
        conn.execute(routes.insert(), rows)
    start = time.time() + 1.0
    pairs = [(f"good{n:04d}", start + 0.1 + n * 10.0 / good) for n in range(good)]
    pairs.append(("hostile", start))
    settings = HealthSettings()
    began = time.perf_counter()
    report = run_batch(engine, settings, pairs)
    took = time.perf_counter() - began
    by_id = {r.target_id: r for r in report.results}
    late = [by_id[i].lateness_ms for i, _ in pairs[:-1] if by_id[i].lateness_ms is not None]
    hostile = by_id.get("hostile")
    return {
        "good_routes": good,
        "body_bytes": body,
        "pattern": pattern,
        "good_lateness_max_ms": max(late) if late else None,
        "good_lateness_p50_ms": pct(late, 0.5),
        "good_healthy": sum(1 for i, _ in pairs[:-1] if by_id[i].status == "healthy"),
        "hostile_status": hostile.status if hostile else None,
        "hostile_error": hostile.error if hostile else None,
        "hostile_response_ms": hostile.response_time_ms if hostile else None,
        "batch_s": round(took, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--routes", type=int, default=2000)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--dead-pct", type=float, default=5.0, help="black-holed routes, percent")
    parser.add_argument(
        "--duration", type=float, default=None, help="measured seconds (default 2 intervals)"
    )
    parser.add_argument("--reference-seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=4, help="batch threads (consumer workers)")
    parser.add_argument("--upstream-ports", type=int, default=8)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument(
        "--consumer",
        action="store_true",
        help="also measure through a real `proxyos-worker run` process",
    )
    parser.add_argument(
        "--hostile-regex",
        action="store_true",
        help="measure only the delay a catastrophic body regex causes to other routes",
    )
    parser.add_argument("--hostile-good", type=int, default=50, help="good routes beside it")
    parser.add_argument("--hostile-body", type=int, default=28, help="hostile body, bytes")
    parser.add_argument("--hostile-pattern", default="(a+)+$", help="the hostile route's body regex")
    parser.add_argument("--hostile-mixed", action="store_true", help="a body of random `a`s and `b`s")
    parser.add_argument("--serve", nargs="+", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(*args.serve))
        return
    duration = args.duration or 2 * args.interval
    proc, ports = start_upstreams(args.upstream_ports, 4, args.hostile_body, args.hostile_mixed)
    tmp = Path(tempfile.mkdtemp(prefix="health-bench-"))
    engine = create_engine(f"sqlite:///{tmp / 'proxyos.db'}")
    try:
        upgrade(engine)
        if args.hostile_regex:
            out = {"hostile_regex": hostile_regex(
                engine, ports, args.hostile_good, args.hostile_body, args.hostile_pattern
            )}
            print("hostile regex (one batch):", json.dumps(out["hostile_regex"]))
            print(json.dumps(out))
            return
        dead_ids = make_routes(engine, args.routes, args.interval, ports, args.dead_pct)
        settings = HealthSettings()
        print(
            f"health benchmark: {args.routes} routes every {args.interval} s, {len(dead_ids)} black-holed "
            f"({args.dead_pct:g}%), timeout {settings.timeout:g} s, {os.cpu_count()} CPUs, SQLite {tmp}"
        )
        out: dict = {"routes": args.routes, "interval_s": args.interval, "dead": len(dead_ids)}
        if not args.skip_sweep:
            out["sweep"] = sweep(engine, settings)
            print("sweep (all routes at once):", json.dumps(out["sweep"]))
        out["scheduled"] = scheduled(
            engine, settings, args.routes, args.interval, duration, dead_ids, args.workers
        )
        print("scheduled (steady state):  ", json.dumps(out["scheduled"]))
        if args.consumer:
            engine.dispose()
            out["consumer"] = consumer(
                tmp / "proxyos.db", args.interval, duration, dead_ids, args.workers
            )
            print("consumer (proxyos-worker run):", json.dumps(out["consumer"]))
        out["reference"] = reference(engine, args.reference_seconds)
        print("reference (sequential):    ", json.dumps(out["reference"]))
        ref_rate = out["reference"]["checks_per_s"]
        if "sweep" in out:
            out["capacity_ratio"] = round(out["sweep"]["checks_per_s"] / ref_rate, 1)
        out["cycle_ratio"] = round(out["reference"]["projected_cycle_s"] / args.interval, 1)
        goal = args.routes / args.interval
        out["goal"] = {
            "checks_per_s": round(goal, 1),
            "met": all(
                out[part]["checks_per_s"] >= 0.97 * goal and out[part]["lateness_p99_ms"] < 2000
                for part in ("scheduled", "consumer")
                if part in out
            ),
        }
        print(
            f"ratio: sweep is {out.get('capacity_ratio', '-')}x the reference's checks/s; the reference "
            f"needs {out['cycle_ratio']}x the interval for one cycle"
        )
        print(json.dumps(out))
    finally:
        engine.dispose()
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
