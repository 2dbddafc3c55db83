"""Job leases held by consumers on other hosts, on SQLite and PostgreSQL (issue #6).

A dead holder on this host is taken over at once (its pid is gone); a holder on another
host cannot be probed from here, so its lease is respected until it expires, however
dead its pid looks here. These tests play the other host by writing its leases with
an owner `otherhost:PID/run`, where PID is a process that has ended on this machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import types

import pytest
import sqlalchemy as sa

from db import leases
from db.engine import write_transaction
from db.leases import JOB_LEASES, Owner
from db.schema import job_leases, task_runs
from tests.toolkit.jobs import job_context
from tests.toolkit.processes import run_cli, wait_until
from workers.registry import Job, JobContext
from workers.runner import run_job
from workers.scheduler import PeriodicScheduler

OTHER_HOST = "otherhost"


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has ended here: on this host its lease is released."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


@pytest.fixture
def other_owner(dead_pid) -> str:
    assert socket.gethostname() != OTHER_HOST
    return f"{OTHER_HOST}:{dead_pid}/run"


def _hold(engine, job: str, owner: str, expires_at: float) -> None:
    """The lease row as another host's consumer wrote it."""
    with write_transaction(engine) as conn:
        conn.execute(job_leases.insert().values(job=job, owner=owner, expires_at=expires_at))


def _leases(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(job_leases).order_by(job_leases.c.job))]


def _runs(engine, job: str) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(task_runs.c.status, task_runs.c.error)
            .where(task_runs.c.job == job).order_by(task_runs.c.started_at))]


class Ticks:
    """The periodic path in one process: a scheduler whose every call is a new tick of
    `job`, and whose enqueue runs the tick's task through the real runner at once."""

    def __init__(self, ctx: JobContext, job: Job) -> None:
        self.clock = 1_000_000.0
        self.outcomes: list[str] = []
        self.scheduler = PeriodicScheduler(ctx.engine, [job], self._run, clock=lambda: self.clock)
        self.ctx, self.job = ctx, job

    def _run(self, name: str) -> str:
        result = run_job(self.ctx, self.job, task_id=f"tick-{self.clock:.0f}")
        self.outcomes.append(result.status)
        return result.run_id

    def next(self) -> str:
        self.clock += self.job.every
        assert self.scheduler.tick() == [self.job.name], "this process should claim every tick"
        return self.outcomes[-1]


def test_a_live_lease_of_another_host_is_neither_acquired_nor_released(any_engine, other_owner):
    expires = time.time() + 3600
    _hold(any_engine, "aggregate", other_owner, expires)

    assert not JOB_LEASES.take(any_engine, "aggregate", Owner.here("a-run-here"), 30)
    assert JOB_LEASES.release_dead(any_engine, socket.gethostname()) == []
    assert JOB_LEASES.release_dead(any_engine, socket.gethostname(), "aggregate") == []
    assert _leases(any_engine) == [("aggregate", other_owner, expires)]
    # Only the holder's own host may judge it by its pid (the consumer starting there).
    assert JOB_LEASES.release_dead(any_engine, OTHER_HOST) == ["aggregate"]


def test_run_once_waits_for_another_hosts_lease_then_takes_it_over(any_engine, any_url, worker_env, other_owner):
    """The user's view: `run-once --wait 0` is skipped while the other host's lease lives,
    saying who holds it; once it has expired (its holder stopped renewing) the job runs."""
    env = dict(worker_env, PROXYOS_DATABASE_URL=any_url)
    _hold(any_engine, "aggregate", other_owner, time.time() + 3600)

    blocked = run_cli(["run-once", "aggregate", "--json", "--wait", "0"], env)
    assert blocked.returncode == 0, blocked.stdout + blocked.stderr
    result = json.loads(blocked.stdout)
    assert result["status"] == "skipped", result
    assert other_owner in result["error"] and "expires" in result["error"], result["error"]

    with write_transaction(any_engine) as conn:  # its holder's last renewal was 40 s ago
        conn.execute(job_leases.update().values(expires_at=time.time() - 10))
    done = run_cli(["run-once", "aggregate", "--json"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["status"] == "ok", done.stdout
    assert [status for status, _ in _runs(any_engine, "aggregate")] == ["skipped", "ok"]
    assert _leases(any_engine) == []  # released after the run, not left to the other host


def test_the_next_tick_after_another_hosts_lease_expires_runs(any_engine, any_url, tmp_path, other_owner):
    """The other host took the lease for 1 s and died: each tick is skipped until the
    lease has expired, and the first tick after it runs the job."""
    ctx = job_context(any_url, tmp_path)
    ran: list[float] = []
    ticks = Ticks(ctx, Job("tick-job", "", run=lambda c, o: ran.append(time.time()), every=5, lease_seconds=30))
    assert JOB_LEASES.take(any_engine, "tick-job", other_owner, seconds=1.0)
    [(_, _, expires_at)] = _leases(any_engine)

    assert ticks.next() == "skipped"
    wait_until(lambda: ticks.next() == "ok", timeout=20, what="a tick to run after the other host's lease expired",
               interval=0.1)
    assert set(ticks.outcomes[:-1]) == {"skipped"} and len(ran) == 1
    assert ran[0] >= expires_at - 0.05  # not before the lease ran out (allowing for clock resolution)
    assert _leases(any_engine) == []
    ctx.close()


def test_a_holder_on_another_host_that_keeps_renewing_is_never_taken_over(any_engine, any_url, tmp_path,
                                                                          other_owner):
    """The other host's run goes on for four lease periods, renewing every third of one
    as `keep_lease` does; every tick here is skipped. When it stops renewing (killed),
    the job runs here once the lease has expired."""
    lease = 1.0
    ctx = job_context(any_url, tmp_path)
    ran: list[float] = []
    ticks = Ticks(ctx, Job("renewed", "", run=lambda c, o: ran.append(time.time()), every=5, lease_seconds=lease))
    assert JOB_LEASES.take(any_engine, "renewed", other_owner, lease)
    stop, renewals = threading.Event(), []

    def holder() -> None:
        while not stop.wait(lease / 3):
            renewals.append(JOB_LEASES.renew(any_engine, "renewed", other_owner, lease))

    beat = threading.Thread(target=holder, name="otherhost-lease")
    beat.start()
    try:
        end = time.monotonic() + 4 * lease
        while time.monotonic() < end:
            assert ticks.next() == "skipped", f"taken over after {len(renewals)} renewals"
            stop.wait(0.1)  # a new tick every 0.1 s or so
    finally:
        stop.set()
        beat.join()
    assert ran == [] and len(renewals) >= 9 and all(renewals), renewals
    assert [owner for _, owner, _ in _leases(any_engine)] == [other_owner]
    stopped = time.time()

    wait_until(lambda: ticks.next() == "ok", timeout=20, what="a tick to run after the holder stopped renewing",
               interval=0.1)
    assert len(ran) == 1 and ran[0] - stopped < lease + 5
    ctx.close()


def test_a_run_blocked_by_another_host_says_which_host_and_until_when(any_engine, any_url, tmp_path, other_owner):
    """What `task_runs` (and `proxyos-worker status`) shows for a skipped tick."""
    ctx = job_context(any_url, tmp_path)
    _hold(any_engine, "blocked", other_owner, time.time() + 25)
    result = run_job(ctx, Job("blocked", "", run=lambda c, o: None))
    [(status, error)] = _runs(any_engine, "blocked")
    assert (status, error) == ("skipped", result.error)
    assert error.startswith("another run of this job is in progress"), error
    assert f"lease held by {other_owner}" in error, error
    assert "it expires in 2" in error and "unless its holder renews it" in error, error  # in 25 s, or 24
    ctx.close()


def test_hosts_racing_for_an_expired_lease_take_it_once(any_engine, other_owner):
    _hold(any_engine, "raced", other_owner, time.time() - 1)
    owners = [f"host{n}:{1000 + n}/run" for n in range(8)]
    start, won = threading.Barrier(len(owners)), {}

    def take(owner: str) -> None:
        start.wait()
        won[owner] = JOB_LEASES.take(any_engine, "raced", owner, 30)

    threads = [threading.Thread(target=take, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [owner for owner, took in won.items() if took]
    assert len(won) == len(owners) and len(winners) == 1, won
    assert [owner for _, owner, _ in _leases(any_engine)] == winners


@pytest.mark.parametrize(("holder_skew", "taker_skew"), [(0.0, 60.0), (-60.0, 0.0)],
                         ids=["taker-ahead", "holder-behind"])
def test_hosts_whose_clocks_differ_respect_each_others_leases(any_engine, monkeypatch, holder_skew, taker_skew):
    """A host whose clock is a minute ahead must not see a live lease as expired, and a
    lease written by a host whose clock is a minute behind must not look expired to the
    others: expiry is judged by one clock, the database's."""
    def on_host(skew: float) -> None:
        clock = types.SimpleNamespace(time=lambda: time.time() + skew, sleep=time.sleep)
        monkeypatch.setattr(leases, "time", clock)

    on_host(holder_skew)
    assert JOB_LEASES.take(any_engine, "skewed", "holder:1/run", 30)
    on_host(taker_skew)
    assert not JOB_LEASES.take(any_engine, "skewed", "taker:2/run", 30)
    on_host(holder_skew)
    assert JOB_LEASES.renew(any_engine, "skewed", "holder:1/run", 30)
    on_host(taker_skew)
    assert not JOB_LEASES.take(any_engine, "skewed", "taker:2/run", 30)
    assert [owner for _, owner, _ in _leases(any_engine)] == ["holder:1/run"]
