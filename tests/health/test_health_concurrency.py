"""A dead upstream never holds up the others; results are written in batches; checks
wait for their due time."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import sqlalchemy as sa

from db.schema import health_checks
from tasks.health.batch import run_batch
from tasks.health.verdict import CheckResult
from tasks.health.writer import ResultWriter
from tests.toolkit.factories import add_route, ups


def _statuses(engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(health_checks.c.route_id, health_checks.c.overall_status))
        return dict(rows.all())


def test_a_black_holed_upstream_does_not_delay_a_healthy_route(
    engine, settings, upstream, blackhole
):
    dead = add_route(engine, upstreams=ups(blackhole.address), name="dead")
    alive = [add_route(engine, upstreams=ups(upstream.address), name=f"alive-{n}") for n in range(5)]
    patient = dataclasses.replace(settings, timeout=60.0, concurrency=2)
    reports = []
    worker = threading.Thread(
        target=lambda: reports.append(
            run_batch(engine, patient, [(dead, None)] + [(a, None) for a in alive])
        )
    )
    worker.start()
    assert blackhole.accepted.wait(30)
    deadline = time.monotonic() + 30
    while set(_statuses(engine)) != set(alive) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the database: nothing else signals that a row is there
    # Every healthy route is recorded while the dead one is still waiting for an answer.
    assert set(_statuses(engine)) == set(alive)
    assert worker.is_alive()
    blackhole.stop()  # the dead upstream hangs up: its check ends now
    worker.join(30)
    (report,) = reports
    by_id = {r.target_id: r for r in report.results}
    assert by_id[dead].status == "unhealthy"
    # aiohttp may retry a request whose connection was dropped; then the port is closed.
    assert by_id[dead].error in (
        f"{blackhole.address}: connection closed without a response",
        f"{blackhole.address}: connection refused",
    )


def test_checks_wait_for_their_due_time_and_report_lateness(engine, settings, upstream):
    route = add_route(engine, upstreams=ups(upstream.address))
    due = time.time() + 0.3
    (result,) = run_batch(engine, settings, [(route, due)]).results
    assert result.started_at >= due
    assert result.lateness_ms is not None and result.lateness_ms >= 0


def _result(n: int) -> CheckResult:
    return CheckResult("route", f"r{n}", f"r{n}", "healthy", 0.0)


def test_writer_writes_many_rows_per_transaction():
    sizes: list[int] = []

    async def main() -> None:
        writer = ResultWriter(
            lambda results: sizes.append(len(results)) or [], max_rows=250, max_delay=30.0
        )
        writer.start()
        for n in range(600):
            writer.add(_result(n))
        await writer.close()

    asyncio.run(main())
    assert sizes == [250, 250, 100]


def test_writer_does_not_keep_a_lone_result_waiting():
    written = threading.Event()

    async def main() -> None:
        writer = ResultWriter(lambda results: written.set() or [], max_rows=250, max_delay=0.05)
        writer.start()
        writer.add(_result(1))
        assert await asyncio.to_thread(written.wait, 30)  # written before the batch ends
        await writer.close()

    asyncio.run(main())


def test_a_failed_write_is_reported_and_the_rest_is_written():
    calls: list[int] = []

    def write(results):
        calls.append(len(results))
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return []

    async def main() -> ResultWriter:
        writer = ResultWriter(write, max_rows=2, max_delay=30.0)
        writer.start()
        for n in range(4):
            writer.add(_result(n))
        await writer.close()
        return writer

    writer = asyncio.run(main())
    assert calls == [2, 2]
    assert writer.errors == ["could not write 2 results: database is locked"]
    assert writer.written == 2
