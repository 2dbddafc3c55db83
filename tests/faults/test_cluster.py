"""Cluster mode: PostgreSQL database, Redis queue, three `proxyos-worker run` consumers
(the Procfile's `worker` line, each running the scheduler too) sharing 500 health-checked
routes (10 s interval, loopback HTTP upstreams), 20 DNS-01 certificates (BIND 9 + Pebble)
and a live access log. One consumer is SIGKILLed part-way, while it holds a job lease.

Checked: every periodic tick is claimed and enqueued once across the cluster, and each
enqueued tick has one run (in task_runs, or in a consumer's debug log when it found
nothing to do; none only for messages lost with the killed consumer); the killed holder
blocks no later tick; every route is checked once per interval in the measured window,
none twice and none skipped; each certificate is ordered once (Pebble's log and
cert_issuance_log agree); traffic totals equal a recount of the raw log. The figures are printed."""

from __future__ import annotations

import itertools
import json
import random
import re
import secrets
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import create_engine, write_transaction
from tasks.health.schedule import phase
from tests.toolkit.caddy_log import caddy_line
from tests.toolkit.certs import cert_env_for
from tests.toolkit.databases import scalar
from tests.toolkit.factories import add_provider, add_route, new_secret, ups
from tests.toolkit.processes import Consumer, run_cli, wait_until
from tests.toolkit.servers.pebble import pebble_counts
from tests.toolkit.servers.redis import fresh_redis_url
from tests.toolkit.servers.upstreams import start_upstream_process
from tests.toolkit.traffic import check_traffic
from workers.config import load
from workers.consumer import build_queue

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

HEALTH_ROUTES = 500
CERTS = 20
INTERVAL = 10  # seconds between checks of each route
WINDOW = 4 * INTERVAL  # the measured window
AFTER_KILL = 40  # seconds the two survivors run on alone (past the 30 s lease of a killed ingest)
LINES_PER_SECOND = 400
TICK = re.compile(r"enqueued (\S+) for tick (\d+) \(task (\S+)\)")


class LiveLog:
    """Appends Caddy lines for the routes' hosts, LINES_PER_SECOND, until stopped."""

    def __init__(self, path: Path, hosts: list[str], seed: int) -> None:
        self.path, self.hosts, self.rng = path, hosts, random.Random(seed)
        self.lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.path.open("a") as log:
            while not self._stop.wait(0.1):
                now = time.time()
                for _ in range(LINES_PER_SECOND // 10):
                    log.write(caddy_line(self.rng.choice(self.hosts), now, status=self.rng.choice((200, 200, 404, 503)),
                                         duration=self.rng.uniform(0.001, 0.3), size=self.rng.randrange(100, 9000)))
                    self.lines += 1
                log.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _add_routes(engine, upstream_ports: list[int], provider_id: str) -> tuple[list[str], list[str], list[str]]:
    hosts = [f"r{i}.cluster.test" for i in range(HEALTH_ROUTES)]
    domains = [f"c{secrets.token_hex(4)}.example.test" for _ in range(CERTS)]
    with write_transaction(engine) as conn:
        health = [add_route(conn, host, name=f"r{i}", tls_mode="off", health_check_enabled=1,
                            health_check_interval=INTERVAL, upstreams=ups(f"127.0.0.1:{port}"))
                  for i, (host, port) in enumerate(zip(hosts, itertools.cycle(upstream_ports)))]
        for domain in domains:
            add_route(conn, domain, provider_id, name=domain, upstreams=ups("127.0.0.1:9"), health_check_enabled=0,
                      health_check_interval=INTERVAL)
    return health, hosts, domains


def _runs_since(engine, job: str, since: float) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT started_at, finished_at, status, error, summary FROM task_runs WHERE job = :j AND started_at >= :s"
            " ORDER BY started_at"), {"j": job, "s": since})]


def _tick_claims(consumers: list[Consumer]) -> list[tuple[str, int, str, int]]:
    """(job, tick, task id, consumer index) for every tick any consumer enqueued."""
    return [(m[1], int(m[2]), m[3], index) for index, consumer in enumerate(consumers)
            for m in TICK.finditer(consumer.log())]


def _health_slots(engine, route_ids: list[str], start: float, end: float) -> dict[str, int]:
    """Per route, its due slots (phase + k * interval) falling in [start, end) against the
    checks made: a slot checked twice is a duplicate, a slot not checked a miss."""
    with engine.connect() as conn:
        checks = conn.execute(sa.text(
            "SELECT route_id, checked_at FROM health_checks WHERE checked_at >= :a AND checked_at < :b"),
            {"a": start - INTERVAL, "b": end + INTERVAL}).all()
    per_route = defaultdict(list)
    for route_id, checked_at in checks:
        per_route[route_id].append(checked_at)
    expected = duplicates = misses = 0
    for route_id in route_ids:
        offset = phase(route_id, INTERVAL)
        # checked_at is the start second of the probe: the slot is the nearest due time.
        slots = Counter(round((at + 0.5 - offset) / INTERVAL) for at in per_route[route_id])
        first = int((start - offset) // INTERVAL) + 1
        for k in range(first, first + 10_000):
            due = offset + k * INTERVAL
            if due >= end:
                break
            expected += 1
            duplicates += max(0, slots[k] - 1)
            misses += slots[k] == 0
    return {"expected": expected, "duplicates": duplicates, "misses": misses}


def _holder(engine, consumers: list[Consumer], rng: random.Random) -> tuple[int, str | None]:
    """The consumer holding a job lease right now (a run in progress), polled for up to
    30 s; else one at random. Returns its index and the job."""
    pids = {str(c.process.pid): i for i, c in enumerate(consumers)}
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            for job, owner in conn.execute(sa.text("SELECT job, owner FROM job_leases")).all():
                pid = owner.partition("/")[0].rpartition(":")[2]
                if pid in pids:
                    return pids[pid], job
            conn.rollback()
            time.sleep(0.01)
    return rng.randrange(len(consumers)), None


def test_three_consumers_on_postgres_and_redis(postgres_url, worker_env, tmp_path, fault_bind, fault_pebble):
    seed = secrets.randbelow(2**31)
    print(f"\ncluster test: seed {seed}")
    env = cert_env_for(worker_env, fault_bind, fault_pebble, tmp_path / "certs", new_secret(),
                       propagation_timeout=30)
    log_file = tmp_path / "access.log"
    env.update(PROXYOS_DATABASE_URL=postgres_url, PROXYOS_QUEUE_URL=fresh_redis_url(13), LOG_LEVEL="debug",
               PROXYOS_ACCESS_LOG=str(log_file), PROXYOS_HEALTH_TIMEOUT="3", PROXYOS_CERT_LEASE_SECONDS="30",
               PROXYOS_RETENTION_ACCESS_LOG_PER_ROUTE="0",  # every row kept: recounted below
               # Checks are counted against each route's fixed slots below; fast re-checks
               # (a result that disagrees with the status, e.g. a probe slowed by this
               # test's load) would add checks between them: tests/health/test_health_fast.py
               PROXYOS_HEALTH_FAST_INTERVAL="0")
    migrated = run_cli(["migrate"], env)  # the Procfile's release step
    assert migrated.returncode == 0, migrated.stderr
    engine = create_engine(postgres_url)
    provider = add_provider(engine, fault_bind.credentials, secret=env["PROXYOS_SECRET"])
    served = tmp_path / "www"
    served.mkdir()
    upstreams = [start_upstream_process(served) for _ in range(2)]
    health_ids, hosts, domains = _add_routes(engine, [u.port for u in upstreams], provider)
    log_file.touch()
    live = LiveLog(log_file, hosts, seed)
    pebble_before = pebble_counts(fault_pebble)
    consumers = [Consumer(env, tmp_path / f"worker-{i}.log", "--workers", "4") for i in range(3)]
    queue, ctx = build_queue(load(env))
    rng = random.Random(seed)
    try:
        wait_until(lambda: scalar(engine, "SELECT count(*) FROM certificates WHERE status = 'active'") == CERTS,
                   timeout=180, what="the 20 certificates")
        wait_until(lambda: scalar(engine, "SELECT count(DISTINCT route_id) FROM health_checks") == HEALTH_ROUTES,
                   timeout=120, what="a first check of every route")
        window_start = time.time() + 1
        wait_until(lambda: scalar(engine, "SELECT last_tick FROM job_schedule WHERE job = 'health-dispatch'")
                   >= window_start + WINDOW + 5, timeout=WINDOW + 60, what="the measured window to pass")
        window_end = window_start + WINDOW
        victim, held = _holder(engine, consumers, rng)
        killed_at = time.time()
        consumers[victim].kill()
        wait_until(lambda: scalar(engine, "SELECT min(last_tick) FROM job_schedule WHERE job IN"
                                           " ('ingest', 'health-dispatch')") >= killed_at + AFTER_KILL,
                   timeout=AFTER_KILL + 60, what="the survivors to run on")
        live.stop()
        lines = log_file.read_bytes().count(b"\n")
        wait_until(lambda: scalar(engine, "SELECT count(*) FROM access_log") == lines, timeout=90,
                   what="every line of the live log to be ingested")
        # Its next tick may be a minute away. Asked for on demand, a run that finds one in
        # progress (which may have begun before the last rows) is retried until it runs.
        asked_at = time.time()
        queue.enqueue("aggregate", on_demand=True)
        try:
            wait_until(lambda: scalar(engine, "SELECT value FROM traffic_state WHERE name = 'aggregated_seq'")
                       == scalar(engine, "SELECT max(seq) FROM access_log"), timeout=60, what="every row counted")
        except AssertionError as exc:
            runs = _runs_since(engine, "aggregate", asked_at - 60)
            raise AssertionError(f"{exc}; aggregate runs since a minute before: {runs}") from exc
        for index, consumer in enumerate(consumers):
            if index != victim:
                assert consumer.stop() == 0, consumer.log()[-3000:]
        health = _health_slots(engine, health_ids, window_start, window_end)
        traffic = check_traffic(engine, log_file)
        with engine.connect() as conn:
            runs = Counter(conn.execute(sa.text("SELECT task_id FROM task_runs WHERE task_id IS NOT NULL")).scalars())
            issued = dict(conn.execute(sa.text("SELECT domain, count(*) FROM cert_issuance_log GROUP BY domain")).all())
            statuses = Counter(conn.execute(sa.text("SELECT job || ':' || status FROM task_runs")).scalars())
            # A run killed mid-way holds its job's lease until it expires (30 s for ingest):
            # the ticks in between run as `skipped`, then the job carries on.
            blocked = dict(conn.execute(sa.text(
                "SELECT job, count(*) FROM task_runs WHERE status = 'skipped' AND started_at > :k"
                " AND job <> 'backup' GROUP BY job"), {"k": killed_at}).all())
            resumed = conn.execute(sa.text(
                "SELECT job, min(started_at) FROM task_runs WHERE status = 'ok' AND started_at > :k"
                " GROUP BY job"), {"k": killed_at}).all()
        # A periodic run that found nothing to do leaves no row; the consumer logs it (debug)
        for consumer in consumers:
            runs.update(re.findall(r"job \S+ found nothing to do \(task ([0-9a-f-]+)\)", consumer.log()))
    finally:
        live.stop()
        for consumer in consumers:
            if consumer.process.poll() is None:
                consumer.kill()
        for upstream in upstreams:
            upstream.stop()
        ctx.close()
        engine.dispose()

    claims = _tick_claims(consumers)
    ticks = defaultdict(Counter)
    for job, tick, _, _ in claims:
        ticks[job][tick] += 1
    periods = {job.name: job.every for job in queue.jobs.values() if job.every}
    figures = {}
    for job, counted in sorted(ticks.items()):
        every = periods[job]
        expected = range(min(counted), max(counted) + 1, int(every))
        figures[job] = {"ticks": len(counted), "duplicates": sum(n - 1 for n in counted.values()),
                        "misses": sum(1 for t in expected if t not in counted)}
    lost, doubled, late_lost = [], [], []
    for job, tick, task_id, index in claims:
        if runs[task_id] > 1:
            doubled.append((job, tick))
        elif runs[task_id] == 0:
            (late_lost if tick > killed_at + 1 else lost).append((job, tick, index))
    pebble = {k: v - pebble_before[k] for k, v in pebble_counts(fault_pebble).items()}
    executed = [len(re.findall(r"Executing workers\.queue\.", c.log())) for c in consumers]
    print("periodic ticks (job: ticks, duplicates, misses): "
          + "; ".join(f"{j}: {f['ticks']}, {f['duplicates']}, {f['misses']}" for j, f in figures.items()))
    print(f"runs per enqueued tick: {sum(1 for c in claims if runs[c[2]] == 1)} with one run, {len(doubled)} with two"
          f" or more, {len(lost)} lost with the killed consumer (#{victim}), {len(late_lost)} lost after the kill")
    print(f"killed consumer #{victim}, holding the lease of: {held}")
    print(f"after the kill: runs skipped while a killed run's lease lasted {blocked}; first ok run after the kill: "
          + ", ".join(f"{job} +{at - killed_at:.1f} s" for job, at in sorted(resumed)))
    print(f"health ({HEALTH_ROUTES} routes every {INTERVAL} s, {WINDOW} s window): {health['expected']} checks due,"
          f" {health['duplicates']} duplicates, {health['misses']} misses")
    print(f"certificates: {CERTS} routes, cert_issuance_log {sum(issued.values())} rows, Pebble orders "
          f"{pebble['orders']}, issued {pebble['issued']}")
    print(f"traffic: {traffic['lines']} lines, {traffic['rows']} access_log rows, {traffic['aggregated']} counted;"
          f" tasks executed per consumer {executed}")
    print(json.dumps({"cluster": {"ticks": figures, "health": health, "lost_with_killed": len(lost),
                                  "skipped_after_kill": blocked, "killed_holder_of": held,
                                  "pebble": pebble, "lines": traffic["lines"], "executed": executed,
                                  "runs": dict(statuses)}}))

    assert {"ingest", "health-dispatch", "certs", "prune", "backup"} <= set(figures)
    assert all(f["duplicates"] == 0 for f in figures.values()), figures
    assert all(f["misses"] == 0 for f in figures.values()), figures
    assert figures["ingest"]["ticks"] >= (WINDOW + AFTER_KILL) // 5
    assert doubled == [] and late_lost == [], (doubled, late_lost)
    assert {"ingest", "health-dispatch"} <= {job for job, _ in resumed}, "a job stayed blocked after the kill"
    # All three consumers share one host here: a survivor takes over a killed holder's
    # lease at once (across hosts it waits for the lease to expire).
    assert blocked == {}, f"runs were skipped because a killed run's lease was still held: {blocked}"
    assert health["duplicates"] == 0 and health["misses"] == 0, health
    assert health["expected"] >= HEALTH_ROUTES * (WINDOW // INTERVAL - 1)
    assert issued == {domain: 1 for domain in domains}
    assert pebble == {"orders": CERTS, "issued": CERTS}, pebble
    assert traffic["rows"] == traffic["lines"] == traffic["aggregated"] == lines > 0
    assert all(executed), f"a consumer took no share of the work: {executed}"
