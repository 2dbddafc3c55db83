"""`GET /metrics`: the workers' state in Prometheus's text format.

A custom collector (`WorkerCollector`) reads the database on each scrape, through the
areas' own reading functions, and yields metric families; `render` puts them on a fresh
`CollectorRegistry` and renders them with `generate_latest`. The endpoint runs that in a
thread, so the event loop never waits on the database. Every read is bounded by the
number of jobs, routes, streams, certificates and log sources, never by the history:
counters come from cumulative totals kept in the database (`traffic_route_totals`,
`task_run_totals`, `health_check_totals`, `traffic_ingest_position`), which retention
never prunes, so they only grow, across processes and restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from db import run_totals
from db.schema import RUN_DURATION_BOUNDS_MS, job_schedule
from db.size import sizes
from tasks.backup import newest_backup_time
from tasks.certs import gauges as cert_gauges
from tasks.health import totals as health_totals
from tasks.traffic import totals as traffic_totals

from ..config import Settings
from ..registry import Job, discover
from ..settings.traffic import load as traffic_settings
from .app_keys import ENGINE, QUEUE, SETTINGS

log = logging.getLogger("proxyos.api.metrics")

PREFIX = "proxyos_worker_"


def _name(name: str) -> str:
    return PREFIX + name


class WorkerCollector(Collector):
    """Reads everything on each `collect()`; holds no state between scrapes."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        depth: Callable[[], Mapping[str, int]] | None = None,
        jobs: Mapping[str, Job] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.depth = depth
        self.jobs = jobs if jobs is not None else discover()
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        with self.engine.connect() as conn:
            yield from self._jobs(conn, now)
            yield from self._health(conn)
            yield from self._traffic(conn)
            yield from self._certificates(conn, now)
            yield from self._database(conn)
        yield from self._queue()

    # --- jobs -------------------------------------------------------------------------

    def _jobs(self, conn: sa.Connection, now: float) -> Iterable[Metric]:
        rows = run_totals.read(conn)
        runs = CounterMetricFamily(_name("job_runs"), "Runs finished, by job and outcome (ok, error, skipped).",
                                   labels=["job", "status"])
        success = GaugeMetricFamily(_name("job_last_success_timestamp_seconds"),
                                    "When the job's newest successful run finished (Unix time).", labels=["job"])
        timed: dict[str, list] = {}
        for row in rows:
            runs.add_metric([row.job, row.status], row.runs)
            if row.status == "ok" and row.last_finished_at is not None:
                success.add_metric([row.job], row.last_finished_at)
            if row.status in ("ok", "error"):  # a skipped run did not run the job
                sums = timed.setdefault(row.job, [0] * (len(RUN_DURATION_BOUNDS_MS) + 2))
                sums[0] += row.timed
                sums[1] += row.duration_ms_sum
                for i, bound in enumerate(RUN_DURATION_BOUNDS_MS):
                    sums[2 + i] += getattr(row, f"le_{bound}")
        duration = HistogramMetricFamily(_name("job_duration_seconds"),
                                         "How long the job's runs took (ok and error runs).", labels=["job"])
        for job, sums in sorted(timed.items()):
            buckets = [(_le(bound / 1000), count) for bound, count in zip(RUN_DURATION_BOUNDS_MS, sums[2:],
                                                                          strict=True)]
            duration.add_metric([job], buckets + [("+Inf", sums[0])], sum_value=sums[1] / 1000)
        yield runs
        yield duration
        yield success
        ticks = {job: tick for job, tick in conn.execute(sa.select(job_schedule.c.job, job_schedule.c.last_tick))}
        upcoming = GaugeMetricFamily(_name("job_next_run_timestamp_seconds"),
                                     "When the periodic job runs next (Unix time; now when it is due).",
                                     labels=["job"])
        for name, job in sorted(self.jobs.items()):
            if not job.every or self.settings.jobs.refusal(name):
                continue
            tick = ticks.get(name)
            upcoming.add_metric([name], max(now, tick + job.every) if tick else now)
        yield upcoming

    def _queue(self) -> Iterable[Metric]:
        if self.depth is None:
            return
        depth = GaugeMetricFamily(_name("queue_tasks"), "Tasks in the queue: pending (ready) or scheduled (later).",
                                  labels=["state"])
        for state, count in sorted(self.depth().items()):
            depth.add_metric([state], count)
        yield depth

    # --- health -----------------------------------------------------------------------

    def _health(self, conn: sa.Connection) -> Iterable[Metric]:
        status = GaugeMetricFamily(
            _name("health_state"),
            "The workers' flap-free state of each route and stream: 1, with the state (healthy, degraded, "
            "unhealthy, unknown) as the status label.",
            labels=["kind", "id", "name", "status"])
        for kind, target, name, current in health_totals.states(conn):
            status.add_metric([kind, target, name, current], 1)
        yield status
        checks = CounterMetricFamily(_name("health_checks"), "Checks the workers made, by route or stream and result.",
                                     labels=["kind", "id", "result"])
        duration = SummaryMetricFamily(_name("health_check_duration_seconds"),
                                       "Response time of the checks that got a response.", labels=["kind", "id"])
        timed: dict[tuple[str, str], list] = {}
        for row in health_totals.totals(conn):
            checks.add_metric([row.target_type, row.target_id, row.result], row.checks)
            sums = timed.setdefault((row.target_type, row.target_id), [0, 0])
            sums[0] += row.timed
            sums[1] += row.duration_ms_sum
        for (kind, target), (count, total_ms) in sorted(timed.items()):
            duration.add_metric([kind, target], count, total_ms / 1000)
        yield checks
        yield duration

    # --- certificates -----------------------------------------------------------------

    def _certificates(self, conn: sa.Connection, now: float) -> Iterable[Metric]:
        labels = ["certificate_id", "domain"]
        expiry = GaugeMetricFamily(_name("certificate_expiry_seconds"),
                                   "Seconds until the certificate expires (negative once it has).", labels=labels)
        renewal = GaugeMetricFamily(_name("certificate_next_renewal_timestamp_seconds"),
                                    "When the workers next try to renew or issue it (Unix time; certificates "
                                    "the workers renew).", labels=labels)
        failures = GaugeMetricFamily(_name("certificate_consecutive_failures"),
                                     "Failed attempts to issue or renew it since the last success.", labels=labels)
        deployed = GaugeMetricFamily(_name("certificate_deployed"),
                                     "1 when Caddy holds the current certificate, 0 while it is waiting to be "
                                     "loaded (certificates the workers load into Caddy).", labels=labels)
        for cert in cert_gauges.read(conn, now):
            values = [cert.id, cert.domain]
            if cert.expires_at is not None:
                expiry.add_metric(values, cert.expires_at - now)
            if cert.next_renewal_at is not None:
                renewal.add_metric(values, cert.next_renewal_at)
            failures.add_metric(values, cert.failures)
            if cert.deployed is not None:
                deployed.add_metric(values, 1 if cert.deployed else 0)
        yield from (expiry, renewal, failures, deployed)

    # --- traffic ----------------------------------------------------------------------

    def _traffic(self, conn: sa.Connection) -> Iterable[Metric]:
        labels = ["route_id", "domain"]
        requests = CounterMetricFamily(_name("route_requests"), "Requests counted for the route.", labels=labels)
        errors = CounterMetricFamily(_name("route_errors"), "Requests with status >= 500.", labels=labels)
        sent = CounterMetricFamily(_name("route_sent_bytes"), "Response bytes sent (Caddy's size).", labels=labels)
        for row in traffic_totals.route_totals(conn):
            requests.add_metric([row.route_id, row.domain], row.requests)
            errors.add_metric([row.route_id, row.domain], row.errors)
            sent.add_metric([row.route_id, row.domain], row.bytes)
        yield from (requests, errors, sent)
        lines = CounterMetricFamily(_name("traffic_lines_ingested"), "Access-log lines read.", labels=["source"])
        malformed = CounterMetricFamily(_name("traffic_lines_malformed"),
                                        "Access-log lines skipped as malformed.", labels=["source"])
        unmatched = CounterMetricFamily(_name("traffic_lines_unmatched"),
                                        "Access-log lines for a host that matches no route.", labels=["source"])
        for row in traffic_totals.sources(conn):
            lines.add_metric([row.source], row.lines)
            malformed.add_metric([row.source], row.malformed)
            unmatched.add_metric([row.source], row.unmatched)
        yield from (lines, malformed, unmatched)
        yield GaugeMetricFamily(_name("traffic_rows_not_aggregated"),
                                "access_log rows stored but not yet counted into the buckets.",
                                value=traffic_totals.not_counted(conn))
        source = self.settings.area(traffic_settings).access_log
        lag = traffic_totals.lag(conn, source)
        if lag.behind_bytes is not None:
            yield _single(_name("traffic_ingest_behind_bytes"), "Bytes of the access log not read yet.",
                          str(source), lag.behind_bytes)
        if lag.behind_seconds is not None:
            yield _single(_name("traffic_ingest_lag_seconds"),
                          "Seconds from the newest request counted to the access log's last write, while "
                          "there are unread bytes (0 when caught up).", str(source), lag.behind_seconds)

    # --- database ---------------------------------------------------------------------

    def _database(self, conn: sa.Connection) -> Iterable[Metric]:
        size = GaugeMetricFamily(_name("database_size_bytes"),
                                 "The database on disk: the SQLite file (main) and its WAL, or PostgreSQL's "
                                 "pg_database_size (main).", labels=["file"])
        for part, value in sizes(conn).items():
            size.add_metric([part], value)
        yield size
        if conn.dialect.name == "sqlite":
            newest = newest_backup_time(self.settings.backup_dir)
            if newest is not None:
                yield GaugeMetricFamily(_name("database_last_backup_timestamp_seconds"),
                                        "When the newest backup in PROXYOS_BACKUP_DIR was written (Unix time).",
                                        value=newest)


def _single(name: str, documentation: str, source: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["source"])
    family.add_metric([source], value)
    return family


def _le(seconds: float) -> str:
    return f"{seconds:g}"


def render(collector: Collector) -> bytes:
    """The collector's families in Prometheus's text format, on a fresh registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """`GET /metrics`: read in a thread (the database is not read on the event loop)."""
    app = request.app
    queue = app.get(QUEUE)
    collector = WorkerCollector(app[ENGINE], app[SETTINGS], depth=queue.depth if queue is not None else None)
    try:
        body = await asyncio.to_thread(render, collector)
    except Exception as exc:  # the database is down or busy: say so, and Prometheus marks the target down
        log.warning("metrics: could not read the database: %s", type(exc).__name__)
        return web.Response(status=503, text="metrics unavailable: the database could not be read\n")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
