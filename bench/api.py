"""Enqueueing through the HTTP API (`proxyos-worker serve`) beside `proxyos-worker enqueue`.

    python -m bench.api [--requests 5000] [--concurrency 32] [--cli-calls 64] [--queue sqlite|redis]

Starts `serve` on a fresh SQLite database (queue: a SQLite file, or Redis), makes an
`admin` key as ProxyOS makes one, and POSTs /v1/jobs/backup `--requests` times from
`--concurrency` connections at once (no consumer runs: only enqueueing is measured); then
runs `proxyos-worker enqueue backup` `--cli-calls` times, as many processes at once (a
process a call costs far more, so fewer are run: compare the per-call figures). Checks
that every request left one audit_log row and one queued task. Prints requests/s and
p50/p99 latency for both, and one JSON line.
Goal (issue 13): >= 500 enqueues/s through the API at concurrency 32, on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

from db.engine import create_engine
from db.migrate import upgrade
from tests.api.toolkit import ApiServer, add_api_key, serve_env


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def hammer(url: str, key: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    left = iter(range(requests))
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def client() -> None:
            for _ in left:
                began = time.perf_counter()
                async with session.post(f"{url}/v1/jobs/backup") as response:
                    await response.read()
                    if response.status != 202:
                        raise SystemExit(f"POST answered {response.status}: {await response.text()}")
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - began, latencies


def cli_calls(env: dict[str, str], calls: int, concurrency: int) -> tuple[float, list[float]]:
    def one(_: int) -> float:
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "workers.cli", "enqueue", "backup"], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"enqueue failed: {done.stderr}")
        return time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(calls)))
    return time.perf_counter() - began, latencies


def figures(name: str, count: int, elapsed: float, latencies: list[float]) -> dict:
    result = {"calls": count, "per_s": count / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
              "p99_ms": percentile(latencies, 0.99) * 1000, "mean_ms": statistics.fmean(latencies) * 1000}
    print(f"{name:6s} {count:6d} calls in {elapsed:7.2f} s: {result['per_s']:8.1f}/s   "
          f"p50 {result['p50_ms']:8.1f} ms   p99 {result['p99_ms']:8.1f} ms", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cli-calls", type=int, default=64)
    parser.add_argument("--queue", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--redis-url", default=os.environ.get("PROXYOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        queue_url = args.redis_url if args.queue == "redis" else None
        if queue_url:
            import redis

            redis.Redis.from_url(queue_url).flushdb()
        env = serve_env(tmp, f"sqlite:///{tmp / 'proxyos.db'}", queue_url, LOG_LEVEL="warning")
        engine = create_engine(env["PROXYOS_DATABASE_URL"])
        upgrade(engine)
        _, key = add_api_key(engine, env["PROXYOS_SECRET"], ["admin"], name="bench")
        server = ApiServer(env, tmp / "serve.log")
        try:
            asyncio.run(hammer(server.url, key, min(500, args.requests), args.concurrency))  # warm up
            elapsed, latencies = asyncio.run(hammer(server.url, key, args.requests, args.concurrency))
            api = figures("api", args.requests, elapsed, latencies)
            with engine.connect() as conn:
                audited = conn.exec_driver_sql("SELECT count(*) FROM audit_log").scalar()
            status = server.call("GET", "/v1/status", key).body["queue"]
        finally:
            server.stop()
        warmup = min(500, args.requests)
        expected = warmup + args.requests
        if audited != expected or status["pending"] != expected:
            raise SystemExit(f"{expected} requests left {audited} audit rows and {status['pending']} queued tasks")
        elapsed, latencies = cli_calls(env, args.cli_calls, args.concurrency)
        cli = figures("cli", args.cli_calls, elapsed, latencies)
        engine.dispose()

    print()
    print(f"enqueue `backup` at concurrency {args.concurrency}; database SQLite, queue {args.queue}; "
          f"{os.cpu_count()} CPUs")
    print(f"{'':6s}{'calls':>7s}{'per s':>10s}{'p50 ms':>10s}{'p99 ms':>10s}")
    for name, row in (("api", api), ("cli", cli)):
        print(f"{name:6s}{row['calls']:7d}{row['per_s']:10.1f}{row['p50_ms']:10.1f}{row['p99_ms']:10.1f}")
    print(f"api / cli: {api['per_s'] / cli['per_s']:.0f}x the calls per second   (goal: api >= 500/s)")
    # The metrics helper adds its section (the cost of a /metrics scrape) here.
    print(json.dumps({
        "bench": "api", "queue": args.queue, "concurrency": args.concurrency,
        "api": {k: round(v, 2) for k, v in api.items()}, "cli": {k: round(v, 2) for k, v in cli.items()},
        "goal_met": api["per_s"] >= 500,
    }))


if __name__ == "__main__":
    main()
