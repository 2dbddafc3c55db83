"""Benchmark of how soon someone hears of a route going down: from its upstream stopping
to the webhook receiving the message, with default settings (and the same for its
recovery).

A real `proxyos-worker run` on a new SQLite database; ProxyOS's `alert_webhook` setting
pointing at a receiver in this process; one `route_unhealthy` rule with every default,
added with `proxyos-worker alerts add`. Each round adds a new route (a rule fires once
per target and cooldown) at a check interval of `--interval` seconds, whose upstream is
an HTTP server on loopback in this process; once the route is healthy, the upstream is
stopped at a random moment of the interval, and the time until the webhook receives
`alert.fired` is taken; then it is started again and the time until `alert.resolved`.

    python -m bench.alerts [--rounds 5] [--interval 30]

Prints each round, the median and the worst, and one JSON line. Goal (#14): under 60 s
from down to the webhook at a 30 s interval with the default rise and fall counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa

from db.engine import create_engine
from db.schema import route_health_state, routes, system_settings
from db.sql import new_id


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args) -> None:
        pass


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.heard.append((time.time(), body))  # type: ignore[attr-defined]

    def log_message(self, *_args) -> None:
        pass


def serve(handler, port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def wait_for(condition, timeout: float, what: str, worker: subprocess.Popen, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if worker.poll() is not None:
            sys.exit(f"the worker exited (code {worker.returncode}) while waiting for {what}")
        time.sleep(poll)
    sys.exit(f"timed out after {timeout:g} s waiting for {what}")


def heard(receiver, event: str, domain: str):
    for at, body in list(receiver.heard):
        if body.get("event") == event and domain in body.get("message", ""):
            return at
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="routes taken down and up, one after the other")
    parser.add_argument("--interval", type=int, default=30, help="the routes' health check interval, seconds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYOS_")}
    env.update(PROXYOS_DATABASE_URL=f"sqlite:///{work / 'proxyos.db'}", PROXYOS_QUEUE_URL=f"sqlite:///{work / 'q.db'}",
               PROXYOS_ACCESS_LOG=str(work / "access.log"), PROXYOS_CERT_DIR=str(work / "certs"),
               PROXYOS_BACKUP_DIR=str(work / "backups"))
    cli = [sys.executable, "-m", "workers.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "alerts", "add", "route_unhealthy", "routes down"], env=env, check=True, capture_output=True)
    receiver = serve(_Receiver)
    receiver.heard = []  # type: ignore[attr-defined]
    engine = create_engine(env["PROXYOS_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(system_settings.insert().values(key="alert_webhook", updated_at=int(time.time()),
                                                     value=f"http://127.0.0.1:{receiver.server_port}/"))
    log = (work / "worker.log").open("wb")
    worker = subprocess.Popen([*cli, "run"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rng = random.Random()
    rounds = []
    try:
        for n in range(args.rounds):
            upstream = serve(_Upstream)
            port = upstream.server_port
            route_id, domain = new_id(), f"round{n}.example.test"
            now = int(time.time())
            with engine.begin() as conn:
                conn.execute(routes.insert().values(
                    id=route_id, name=domain, domain=domain, upstream_type="http", created_at=now, updated_at=now,
                    upstreams=json.dumps([{"address": f"127.0.0.1:{port}"}]), health_check_interval=args.interval))

            def status(route_id=route_id):
                with engine.connect() as conn:
                    return conn.execute(sa.select(route_health_state.c.status)
                                        .where(route_health_state.c.route_id == route_id)).scalar()

            wait_for(lambda: status() == "healthy", 3 * args.interval + 30, f"{domain} healthy", worker)
            time.sleep(rng.uniform(0, args.interval))  # a random moment of its check interval
            stop(upstream)
            stopped = time.time()
            fired = wait_for(lambda domain=domain: heard(receiver, "alert.fired", domain), 10 * args.interval + 60,
                             f"the down message of {domain}", worker)
            upstream = serve(_Upstream, port)
            started = time.time()
            resolved = wait_for(lambda domain=domain: heard(receiver, "alert.resolved", domain),
                                10 * args.interval + 60, f"the recovery message of {domain}", worker)
            stop(upstream)
            rounds.append({"down_s": round(fired - stopped, 1), "recovery_s": round(resolved - started, 1)})
            print(f"round {n + 1}: down -> webhook {fired - stopped:5.1f} s, up -> webhook {resolved - started:5.1f} s",
                  flush=True)
    finally:
        os.killpg(worker.pid, signal.SIGINT)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        stop(receiver)
    down = [r["down_s"] for r in rounds]
    up = [r["recovery_s"] for r in rounds]
    print(f"down -> webhook: median {statistics.median(down):.1f} s, worst {max(down):.1f} s (goal: under 60 s)")
    print(f"up -> webhook:   median {statistics.median(up):.1f} s, worst {max(up):.1f} s")
    print(json.dumps({"bench": "alerts", "interval_s": args.interval, "rounds": rounds,
                      "down_median_s": statistics.median(down), "down_worst_s": max(down),
                      "recovery_median_s": statistics.median(up), "recovery_worst_s": max(up)}, sort_keys=True))


if __name__ == "__main__":
    main()
