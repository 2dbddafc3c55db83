"""A quiet idle (issue #15): what an idle worker does not do, and that it still does
everything else.

- the scheduler claims a tick, asks the job whether it has anything to do (read-only),
  and enqueues only when it may;
- the looks (`nothing_new`, `nothing_due`, `nothing_to_count`) say "nothing" only when
  a run would certainly do nothing;
- an idle worker thread sleeps on a SQLite queue until this process stores a task;
- the run-history writer sleeps until there is a record to write.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from huey.consumer import Worker

from db.engine import write_transaction
from db.schema import job_schedule
from tasks.health.schedule import claim_due, nothing_due
from tasks.health.settings import HealthSettings
from tasks.traffic.aggregate import nothing_to_count
from tasks.traffic.ingest import ingest, nothing_new
from tests.toolkit.caddy_log import append_lines
from tests.toolkit.factories import add_route, ups
from tests.toolkit.processes import wait_until
from workers.consumer import DoorbellWorker
from workers.history import RunHistory
from workers.queue import Doorbell, RingingSqliteHuey
from workers.registry import Job
from workers.scheduler import PeriodicScheduler


def _job(name: str, look=None) -> Job:
    return Job(name, "", run=lambda ctx, options: {}, every=5.0, nothing_to_do=look)


def _last_ticks(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(job_schedule.c.job, job_schedule.c.last_tick)).all())


def test_a_claimed_tick_is_enqueued_only_when_its_job_may_have_work(any_engine):
    enqueued: list[str] = []
    idle = _job("idle", look=lambda ctx: "no new lines")
    busy = _job("busy", look=lambda ctx: None)
    plain = _job("plain")  # no look: always enqueued

    def look(job: Job) -> str | None:
        return job.nothing_to_do(None)

    now = [1_000_000.0]
    scheduler = PeriodicScheduler(any_engine, [idle, busy, plain], enqueued.append, clock=lambda: now[0], look=look)
    assert scheduler.tick() == ["busy", "plain"]
    assert enqueued == ["busy", "plain"]
    # The idle job's tick was claimed all the same: `status` shows when it found nothing.
    assert _last_ticks(any_engine) == {"idle": 1_000_000, "busy": 1_000_000, "plain": 1_000_000}
    assert scheduler.tick() == []  # the same tick is not looked at twice
    now[0] += 5
    assert scheduler.tick() == ["busy", "plain"]
    assert _last_ticks(any_engine)["idle"] == 1_000_005


def test_a_look_that_fails_leaves_the_tick_to_the_run(engine):
    def broken(ctx):
        raise sa.exc.OperationalError("SELECT", {}, Exception("database is locked"))

    enqueued: list[str] = []
    job = _job("looks-broken", look=broken)
    scheduler = PeriodicScheduler(engine, [job], enqueued.append, clock=lambda: 2_000_000.0,
                                  look=lambda j: j.nothing_to_do(None))
    assert scheduler.tick() == ["looks-broken"]  # the run meets the fault and records it


def test_ingest_looks_idle_only_with_no_new_byte_and_everything_counted(any_engine, tmp_path):
    log = tmp_path / "access.log"
    assert nothing_new(any_engine, log) == f"no access log at {log}"
    add_route(any_engine, "app.example.test")
    start = time.time() - 120
    append_lines(log, "app.example.test", 3, start)
    assert nothing_new(any_engine, log) is None  # never read: a run reads it
    ingest(any_engine, log)
    assert nothing_new(any_engine, log) == f"no new lines in {log}"
    with log.open("a") as out:
        out.write('{"ts": 1')  # half a line: a run may find nothing yet, but looks
    assert nothing_new(any_engine, log) is None


def test_ingest_does_not_look_idle_with_rows_left_to_count_or_trim(any_engine, tmp_path):
    log = tmp_path / "access.log"
    add_route(any_engine, "app.example.test")
    append_lines(log, "app.example.test", 3, time.time() - 120)
    ingest(any_engine, log)
    with write_transaction(any_engine) as conn:  # as after an upgrade: a backlog to count
        conn.execute(sa.text("UPDATE traffic_state SET value = 0 WHERE name = 'aggregated_seq'"))
    assert nothing_new(any_engine, log) is None
    assert nothing_to_count(any_engine) is None
    with write_transaction(any_engine) as conn:
        conn.execute(sa.text("UPDATE traffic_state SET value = 3 WHERE name = 'aggregated_seq'"))
        # a run stopped before its trim
        conn.execute(sa.text("UPDATE traffic_state SET value = 0 WHERE name = 'ring_seq'"))
    assert nothing_to_count(any_engine) is not None
    assert nothing_new(any_engine, log) is None
    assert nothing_new(any_engine, log, keep_per_route=0) == f"no new lines in {log}"  # no cap: nothing to trim


def test_health_looks_idle_only_when_no_check_is_due(any_engine):
    settings = HealthSettings()
    now = time.time()
    assert nothing_due(any_engine, settings, now) == "no route or stream due"
    add_route(any_engine, upstreams=ups("127.0.0.1:1"), health_check_interval=3600)
    assert nothing_due(any_engine, settings, now) is None  # never scheduled: a dispatch sets it
    claim_due(any_engine, settings, now)  # scheduled (and checked, if its slot was near)
    assert nothing_due(any_engine, settings, now) == "no route or stream due"
    assert claim_due(any_engine, settings, now) == []  # as a dispatch finds
    later = now + 3600  # its next slot has come
    assert nothing_due(any_engine, settings, later) is None
    assert claim_due(any_engine, settings, later)


def _worker(huey, doorbell: Doorbell, stop: threading.Event, delay: float) -> Worker:
    return DoorbellWorker(huey=huey, stop_flag=stop, default_delay=delay, max_delay=delay, backoff=1.0,
                          doorbell=doorbell)


def test_a_task_this_process_stores_wakes_an_idle_worker_at_once(tmp_path):
    huey = RingingSqliteHuey("doorbell-test", filename=str(tmp_path / "q.db"), results=False)
    huey.doorbell = doorbell = Doorbell()
    ran = threading.Event()

    @huey.task()
    def touch():
        ran.set()

    stop = threading.Event()
    worker = _worker(huey, doorbell, stop, delay=600.0)  # without the bell: ten minutes

    def loop():
        while not stop.is_set():
            worker.loop()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    wait_until(lambda: doorbell_waiters(doorbell), what="the worker asleep on the doorbell", timeout=10)
    touch()
    assert ran.wait(30), "the task waited for the worker's next look"
    stop.set()
    doorbell.close()  # a stopping consumer wakes its sleepers
    thread.join(30)
    assert not thread.is_alive()


def test_a_ring_while_no_worker_sleeps_is_not_lost():
    """A task stored between a worker's empty look and its sleep: the sleep that follows
    ends at once (the look comes again), one sleep for each ring, up to `keep`."""
    doorbell = Doorbell(keep=2)
    for _ in range(3):
        doorbell.ring()  # nobody asleep
    two = threading.Thread(target=lambda: [doorbell.sleep(600) for _ in range(2)], daemon=True)
    two.start()
    two.join(30)
    assert not two.is_alive(), "a ring made while no worker slept was lost"
    sleeper = threading.Thread(target=doorbell.sleep, args=(600,), daemon=True)
    sleeper.start()  # the third ring was not kept: this one sleeps until rung
    wait_until(lambda: doorbell_waiters(doorbell), what="the third sleep to wait", timeout=10)
    doorbell.ring()
    sleeper.join(30)
    assert not sleeper.is_alive()


def doorbell_waiters(doorbell: Doorbell) -> int:
    return len(doorbell._bell._waiters)  # the test awaits the worker's sleep


def test_the_history_writer_sleeps_until_a_record_comes_and_then_writes_it(engine):
    history = RunHistory(engine, buffered=True, interval=0.01)
    assert history._until_due() is None  # nothing held: no timed wake-ups
    row = {"id": "run-1", "job": "j", "task_id": None, "status": "ok", "started_at": time.time(),
           "finished_at": time.time(), "duration_ms": 1, "error": None, "summary": "{}", "host": "h:1"}
    history.started(row)
    wait_until(lambda: _runs(engine), what="the record in task_runs", timeout=10)
    assert history._until_due() is None
    history.close()


def _runs(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM task_runs")).all()
