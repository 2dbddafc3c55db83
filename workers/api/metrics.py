"""`GET /metrics`: the workers' state in Prometheus's text format.

A custom collector (`WorkerCollector`) reads the database on each scrape, through the
areas' own reading functions, and yields metric families: prometheus_client's, and for
the families with a row per route or certificate, `Columns` (exposition.py). `render`
writes them in the text format exactly as the library's `generate_latest` would, at a
fraction of its cost per sample. The endpoint runs that in a thread, so the event loop
never waits on the database. Every read is bounded by the number of jobs, routes,
streams, certificates and log sources, never by the history: counters come from
cumulative totals kept in the database (`traffic_route_totals`, `task_run_totals`,
`health_check_totals`, `traffic_ingest_position`), which retention
never prunes, so they only grow, across processes and restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
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
from .exposition import Columns, text_format

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
        """The families as the library's objects (for a registry and `generate_latest`)."""
        for family in self.families():
            yield family.family() if isinstance(family, Columns) else family

    def families(self) -> Iterator[Metric | Columns]:
        """The families as `render` writes them."""
        now = self.clock()
        with self.engine.connect() as conn:
            yield from self._jobs(conn, now)
            yield from self._routes(conn)
            yield from self._streams(conn)
            yield from self._traffic(conn)
            yield from self._certificates(conn, now)
            yield from self._database(conn)
        yield from self._queue()

    # --- jobs -------------------------------------------------------------------------

    def _jobs(self, conn: sa.Connection, now: float) -> Iterable[Metric | Columns]:
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

    def _queue(self) -> Iterable[Metric | Columns]:
        if self.depth is None:
            return
        depth = GaugeMetricFamily(_name("queue_tasks"), "Tasks in the queue: pending (ready) or scheduled (later).",
                                  labels=["state"])
        for state, count in sorted(self.depth().items()):
            depth.add_metric([state], count)
        yield depth

    # --- routes and streams ---------------------------------------------------------

    def _routes(self, conn: sa.Connection) -> Iterable[Metric | Columns]:
        """Per route: its info (the domain, once), its traffic counters and its health,
        each series labelled by `route_id` alone (join the domain with
        `* on (route_id) group_left (domain) proxyos_worker_route_info`)."""
        route_id = ("route_id",)
        info = Columns(_name("route"), "The route's domain (value 1), to join on route_id.", "info", route_id,
                       info=("domain",))
        requests = Columns(_name("route_requests"), "Requests counted for the route.", "counter", route_id)
        errors = Columns(_name("route_errors"), "Requests with status >= 500.", "counter", route_id)
        sent = Columns(_name("route_sent_bytes"), "Response bytes sent (Caddy's size).", "counter", route_id)
        # rows appended as tuples, not through `add`: this runs for every route on every scrape
        add_info, add_requests, add_errors, add_sent = (
            info.rows.append, requests.rows.append, errors.rows.append, sent.rows.append)
        for route, domain, counted, failed, sent_bytes in traffic_totals.route_totals(conn):
            labels = (route,)
            add_info(((route, domain),))
            if counted is not None:
                add_requests((labels, counted))
                add_errors((labels, failed))
                add_sent((labels, sent_bytes))
        yield from (info, requests, errors, sent)
        yield from self._health(conn, "route")

    def _streams(self, conn: sa.Connection) -> Iterable[Metric | Columns]:
        info = InfoMetricFamily(_name("stream"), "The stream's listen port and protocol (value 1), to join on "
                                "stream_id.", labels=["stream_id"])
        for stream, port, protocol in health_totals.stream_names(conn):
            info.add_metric((stream,), {"listen_port": str(port), "protocol": protocol})
        yield info
        yield from self._health(conn, "stream")

    def _health(self, conn: sa.Connection, kind: str) -> Iterable[Metric | Columns]:
        key = f"{kind}_id"
        state = Columns(
            _name(f"{kind}_health_state"),
            f"The workers' flap-free state of the {kind}: 1, with the state (healthy, degraded, unhealthy, "
            "unknown) as the status label.", "gauge", (key, "status"))
        add_state = state.rows.append
        for target, status in health_totals.states(conn, kind):
            add_state(((target, status), 1))
        yield state
        checks = Columns(_name(f"{kind}_health_checks"), f"Checks the workers made of the {kind}, by result.",
                         "counter", (key, "result"))
        duration = Columns(_name(f"{kind}_health_check_duration_seconds"),
                           "Response time of the checks that got a response.", "summary", (key,))
        add_checks, add_duration = checks.rows.append, duration.rows.append
        target, count, total_ms = None, 0, 0
        for row_target, result, made, timed, duration_ms in health_totals.totals(conn, kind):  # by target
            add_checks(((row_target, result), made))
            if row_target != target:
                if target is not None:
                    add_duration(((target,), count, total_ms / 1000))
                target, count, total_ms = row_target, 0, 0
            count += timed
            total_ms += duration_ms
        if target is not None:
            add_duration(((target,), count, total_ms / 1000))
        yield checks
        yield duration

    # --- certificates -----------------------------------------------------------------

    def _certificates(self, conn: sa.Connection, now: float) -> Iterable[Metric | Columns]:
        labels = ("certificate_id", "domain")
        expiry = Columns(_name("certificate_expiry_seconds"),
                         "Seconds until the certificate expires (negative once it has).", "gauge", labels)
        renewal = Columns(_name("certificate_next_renewal_timestamp_seconds"),
                          "When the workers next try to renew or issue it (Unix time; certificates "
                          "the workers renew).", "gauge", labels)
        failures = Columns(_name("certificate_consecutive_failures"),
                           "Failed attempts to issue or renew it since the last success.", "gauge", labels)
        deployed = Columns(_name("certificate_deployed"),
                           "1 when Caddy holds the current certificate, 0 while it is waiting to be "
                           "loaded (certificates the workers load into Caddy).", "gauge", labels)
        add_expiry, add_renewal, add_failures, add_deployed = (
            expiry.rows.append, renewal.rows.append, failures.rows.append, deployed.rows.append)
        for cert, domain, expires_at, next_renewal_at, failed, in_caddy in cert_gauges.read(conn, now):
            values = (cert, domain)
            if expires_at is not None:
                add_expiry((values, expires_at - now))
            if next_renewal_at is not None:
                add_renewal((values, next_renewal_at))
            add_failures((values, failed))
            if in_caddy is not None:
                add_deployed((values, 1 if in_caddy else 0))
        yield from (expiry, renewal, failures, deployed)

    # --- traffic ----------------------------------------------------------------------

    def _traffic(self, conn: sa.Connection) -> Iterable[Metric | Columns]:
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

    def _database(self, conn: sa.Connection) -> Iterable[Metric | Columns]:
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


def render(collector: WorkerCollector) -> bytes:
    """The collector's families in Prometheus's text format (see exposition.py)."""
    return text_format(collector.families())


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
