"""Fast re-checks (HAProxy's `fastinter`): while a transition is pending, a route or stream
is checked again after the fast interval; once its state settles it is back on its phase.

The scenarios run the dispatcher's claim every 5 s and each claimed check at its due time
on a simulated clock (`Sim`): real probes of real loopback upstreams, real SQLite and
PostgreSQL, and no waiting for the clock, so the figures are exact."""

from __future__ import annotations

import heapq
import itertools
import random
from collections import defaultdict

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from db.engine import write_transaction
from db.schema import health_checks, route_health_state, routes, stream_health_state
from tasks.health.batch import run_batch
from tasks.health.schedule import (
    SLOT_TOLERANCE,
    claim_due,
    fast_due,
    following,
    phase,
    slot_after,
)
from tasks.health.settings import HealthSettings
from tasks.health.state import State, advance, pending
from tasks.health.store import write_results
from tasks.health.verdict import CheckResult
from tests.toolkit.factories import add_route, add_stream, ups
from tests.toolkit.processes import free_port
from tests.toolkit.servers.upstreams import start_http_upstream
from workers.config import ConfigError
from workers.settings.health import load as health_settings

NOW = 1_800_000_000.0


def fast_settings(fast: float = 5.0) -> HealthSettings:
    return HealthSettings(timeout=1.0, fast_interval=fast, write_delay=0.001)


def on_phase(target: str, interval: float, t: float) -> bool:
    off = (t - phase(target, interval)) % interval
    return min(off, interval - off) < SLOT_TOLERANCE


def read_state(engine, target: str, kind: str = "route") -> State:
    table, key = (
        (route_health_state, "route_id") if kind == "route" else (stream_health_state, "stream_id")
    )
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c[key] == target)).mappings().one()
    return State(
        row["status"],
        row["status_since"],
        row["recent"] or "",
        row["consecutive_successes"],
        row["consecutive_failures"],
    )


def next_due(engine, target: str, kind: str = "route") -> float | None:
    table, key = (
        (route_health_state, "route_id") if kind == "route" else (stream_health_state, "stream_id")
    )
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.next_due_at).where(table.c[key] == target)).scalar()


class Sim:
    """The dispatcher every `dispatch_every` seconds and each check it claims at its due
    time, in time order on a simulated clock; `at(t, action)` runs an action at `t`."""

    def __init__(self, engine, settings: HealthSettings, start: float) -> None:
        self.engine, self.settings, self.now = engine, settings, start
        self.events: list = []
        self.order = itertools.count()
        self.claimed: dict[str, list[float]] = defaultdict(list)
        self.checks: dict[str, list[tuple[float, State]]] = defaultdict(list)  # due, state after
        self._push(start, "dispatch", None)

    def _push(self, t: float, kind: str, payload) -> None:
        heapq.heappush(self.events, (t, next(self.order), kind, payload))

    def at(self, t: float, action) -> None:
        self._push(t, "action", action)

    def run_until(self, end: float) -> None:
        while self.events and self.events[0][0] <= end:
            t, _, kind, payload = heapq.heappop(self.events)
            self.now = t
            if kind == "dispatch":
                for due in claim_due(self.engine, self.settings, t):
                    self.claimed[due.target_id].append(due.due_at)
                    self._push(max(due.due_at, t), "check", due)
                self._push(t + self.settings.dispatch_every, "dispatch", None)
            elif kind == "check":
                pair = [(payload.target_id, payload.due_at)]
                is_route = payload.kind == "route"
                report = run_batch(
                    self.engine,
                    self.settings,
                    pair if is_route else (),
                    () if is_route else pair,
                    clock=lambda: self.now,
                )
                assert not report.write_errors
                state = read_state(self.engine, payload.target_id, payload.kind)
                self.checks[payload.target_id].append((payload.due_at, state))
            else:
                payload()

    def history(self, target: str) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    sa.select(health_checks.c.checked_at, health_checks.c.overall_status)
                    .where(health_checks.c.route_id == target)
                    .order_by(health_checks.c.checked_at)
                )
            ]


# --- the rule, alone ------------------------------------------------------------------


def test_a_transition_is_pending_while_the_latest_result_disagrees_with_the_status():
    names = {"H": "healthy", "D": "degraded", "U": "unhealthy"}

    def after(results: str) -> list[bool]:
        state, flags = State(), []
        for n, letter in enumerate(results):
            state, _ = advance(state, names[letter], n, 2, 3)
            flags.append(pending(state))
        return flags

    # new: H pending (rise), HH healthy; then U, U pending (fall), the third decides
    assert after("HHUUU") == [True, False, True, True, False]
    assert after("HHUUUHH") == [True, False, True, True, False, True, False]
    assert after("HHUH") == [True, False, True, False]  # agrees again: settled
    assert after("HHD") == [True, False, True]  # degraded is another level
    # still unknown and flapping from the start: back to the regular interval
    assert after("UH") == [True, False]
    assert after("UHUHU") == [True, False, False, False, False]
    assert not pending(State())


def test_the_fast_interval_is_at_least_the_dispatch_period_and_at_most_the_interval():
    assert HealthSettings().fast_for(30) == 5
    assert HealthSettings(fast_interval=0).fast_for(30) == 0
    assert HealthSettings(fast_interval=1).fast_for(30) == 5  # the dispatcher's period
    assert HealthSettings(fast_interval=20).fast_for(10) == 10
    assert HealthSettings(fast_interval=20).fast_for(3600) == 20


@given(
    target=st.text(min_size=1, max_size=21),
    interval=st.integers(min_value=5, max_value=86_400).map(float),
    fast=st.sampled_from([0.0, 1.0, 5.0, 7.5, 30.0, 600.0]),
    t=st.floats(min_value=1.6e9, max_value=2.0e9, allow_nan=False),
    is_pending=st.booleans(),
)
def test_the_next_due_time_is_within_one_interval_and_on_phase_when_settled(
    target, interval, fast, t, is_pending
):
    effective = HealthSettings(fast_interval=fast).fast_for(interval)
    due = following(target, interval, effective, t, is_pending)
    assert t < due <= t + interval + SLOT_TOLERANCE
    regular = slot_after(target, interval, t)
    assert on_phase(target, interval, regular) and t < regular <= t + interval + SLOT_TOLERANCE
    if is_pending and effective:
        assert due == min(t + effective, regular)
    else:
        assert due == regular
    if on_phase(target, interval, t):  # a regular check: one interval on
        assert abs(regular - (t + interval)) < SLOT_TOLERANCE


@given(
    target=st.text(min_size=1, max_size=21),
    interval=st.one_of(
        st.integers(min_value=5, max_value=3_600).map(float),
        st.floats(min_value=5, max_value=3_600),  # a stream interval such as 30.1
    ),
    start=st.floats(min_value=1.6e9, max_value=2.0e9, allow_nan=False),
    fast_checks=st.integers(min_value=0, max_value=20),
)
def test_after_any_run_of_fast_checks_the_next_regular_check_is_on_phase(
    target, interval, start, fast_checks
):
    fast = HealthSettings().fast_for(interval)
    t = slot_after(target, interval, start)
    for _ in range(fast_checks):
        t = following(target, interval, fast, t, pending=True)
    for _ in range(200):  # and the regular checks after it never drift off the phase
        regular = following(target, interval, fast, t, pending=False)
        assert on_phase(target, interval, regular)
        assert 0 < regular - t <= interval + SLOT_TOLERANCE
        t = regular


# --- the scenario of issue #14: an upstream stops, and comes back ---------------------


@pytest.mark.parametrize("fast", [5.0, 0.0], ids=["fast-5s", "fast-off"])
def test_a_stopped_upstream_is_unhealthy_within_rise_fall_fast_checks(any_engine, fast):
    server = start_http_upstream()
    port = server.server_address[1]
    route = add_route(any_engine, upstreams=ups(server.address), health_check_interval=30)
    settings = fast_settings(fast)
    sim = Sim(any_engine, settings, NOW)
    stop_at, start_at = NOW + 120.5, NOW + 300.5
    sim.at(stop_at, server.stop)
    restarted = []
    sim.at(start_at, lambda: restarted.append(start_http_upstream(port=port)))
    try:
        sim.run_until(NOW + 480)
    finally:
        server.stop()
        for again in restarted:
            again.stop()

    history = sim.history(route)
    first_failed = next(t for t, status in history if status == "unhealthy")
    assert stop_at - 1 < first_failed < stop_at + 30  # its next slot (checked_at: whole s)
    with any_engine.connect() as conn:
        events = conn.execute(
            sa.text(
                "SELECT to_status, created_at FROM health_events WHERE target_id = :r"
                " ORDER BY created_at"
            ),
            {"r": route},
        ).all()
    assert [e[0] for e in events] == ["healthy", "unhealthy", "healthy"]
    down_after = events[1][1] - first_failed
    first_back = next(t for t, status in history if t > first_failed and status == "healthy")
    assert start_at - 1 < first_back < start_at + 30
    up_after = events[2][1] - first_back
    if fast:
        assert down_after == 2 * fast  # fall 3: the failed check and two fast re-checks
        assert up_after == fast  # rise 2: one fast re-check
        assert [s for t, s in history if first_failed <= t <= events[1][1]] == ["unhealthy"] * 3
    else:
        assert down_after == 2 * 30  # the old behaviour: three checks an interval apart
        assert up_after == 30
    # every check's due time was claimed once; settled, they are on the route's phase
    dues = sim.claimed[route]
    assert dues == sorted(set(dues))
    for (due, state), (after, _) in itertools.pairwise(sim.checks[route]):
        if not pending(state) or not fast:
            assert on_phase(route, 30, after)
            assert after == slot_after(route, 30, due)
        else:
            assert after == pytest.approx(due + fast)
    assert on_phase(route, 30, next_due(any_engine, route))


def test_a_stream_is_re_checked_fast_too(engine):
    closed = free_port()
    stream = add_stream(engine, "127.0.0.1", closed)
    sim = Sim(engine, HealthSettings(timeout=1.0, stream_interval=60, write_delay=0.001), NOW)
    sim.run_until(NOW + 200)
    (first_due, _), *rest = sim.checks[stream]
    assert [round(due - first_due, 3) for due, _ in rest[:2]] == [5.0, 10.0]
    assert read_state(engine, stream, "stream").status == "unhealthy"
    assert on_phase(stream, 60, rest[2][0])  # then every 60 s on its phase
    assert rest[3][0] - rest[2][0] == pytest.approx(60)


def test_mixed_intervals_and_flapping_results_keep_every_promise(any_engine):
    """Eight routes (intervals 5 to 60 s, a 5 s one among them) whose upstream answers 200
    or 503 as a seeded random schedule flips it: each due time is claimed once, the next
    check of a settled target is the next slot on its phase, and of a pending one the
    fast re-check (or the slot after, when the dispatcher claimed it before the result
    came)."""
    server = start_http_upstream()
    rng = random.Random(14)
    intervals = [5, 7, 10, 30, 30, 45, 60, 30]
    ids = [
        add_route(any_engine, upstreams=ups(server.address), health_check_interval=every)
        for every in intervals
    ]
    sim = Sim(any_engine, fast_settings(), NOW)

    def flip(route: str, code: int):
        def action() -> None:
            with write_transaction(any_engine) as conn:
                conn.execute(
                    routes.update()
                    .where(routes.c.id == route)
                    .values(health_check_path=f"/?code={code}")
                )

        return action

    for route in ids:
        t = NOW
        for _ in range(6):
            t += rng.uniform(10, 90)
            sim.at(t, flip(route, rng.choice([200, 503])))
    try:
        sim.run_until(NOW + 600)
    finally:
        server.stop()
    fast_taken = 0
    for route, every in zip(ids, intervals, strict=True):
        every = float(every)
        dues = sim.claimed[route]
        assert dues == sorted(set(dues)), route
        for (due, state), (after, _) in itertools.pairwise(sim.checks[route]):
            regular = slot_after(route, every, due)
            if pending(state):
                assert after in (pytest.approx(fast_due(due, every, 5.0)), pytest.approx(regular))
                assert after <= regular + SLOT_TOLERANCE
                fast_taken += after < regular - SLOT_TOLERANCE
            else:
                assert after == pytest.approx(regular) and on_phase(route, every, after)
    assert fast_taken >= 10  # the scenario did exercise fast re-checks


# --- what moves the schedule, and what does not ---------------------------------------


def _failed(route: str, at: float, interval: float = 30.0, fast: float = 5.0) -> CheckResult:
    return CheckResult(
        "route",
        route,
        route,
        "unhealthy",
        at,
        error="refused",
        interval=interval,
        recheck_at=fast_due(at, interval, fast),
    )


def _set_schedule(engine, route: str, status: str, recent: str, due: float | None) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            route_health_state.insert().values(
                route_id=route,
                status=status,
                recent=recent,
                consecutive_successes=len(recent),
                consecutive_failures=0,
                next_due_at=due,
            )
        )


def test_a_pending_result_only_ever_brings_the_schedule_forward(any_engine):
    route = add_route(any_engine, upstreams=ups("127.0.0.1:1"), health_check_interval=30)
    _set_schedule(any_engine, route, "healthy", "HH", NOW + 25)
    write_results(any_engine, [_failed(route, NOW)], 2, 3)  # on demand, or scheduled
    assert next_due(any_engine, route) == NOW + 5
    write_results(any_engine, [_failed(route, NOW + 1)], 2, 3)  # later: not moved later
    assert next_due(any_engine, route) == NOW + 5
    settled = CheckResult("route", route, route, "healthy", NOW + 2, interval=30, recheck_at=NOW + 7)
    write_results(any_engine, [settled], 2, 3)
    write_results(any_engine, [settled], 2, 3)  # healthy agrees with healthy: not moved
    assert next_due(any_engine, route) == NOW + 5


def test_a_slot_already_claimed_is_the_re_check(any_engine):
    """The dispatcher claimed the slot at NOW + 3 before the result of the check at NOW
    came (next_due_at is that slot + 30): that claimed check comes before the fast
    re-check would, and bringing next_due_at back would claim it twice."""
    route = add_route(any_engine, upstreams=ups("127.0.0.1:1"), health_check_interval=30)
    _set_schedule(any_engine, route, "healthy", "HH", NOW + 33)
    write_results(any_engine, [_failed(route, NOW)], 2, 3)
    assert next_due(any_engine, route) == NOW + 33


def test_a_target_never_scheduled_stays_unscheduled(any_engine):
    """Only `run-once health` has checked it (no dispatcher): a fast re-check would show
    up as an overdue check in `status`."""
    route = add_route(any_engine, upstreams=ups("127.0.0.1:1"), health_check_interval=30)
    write_results(any_engine, [_failed(route, NOW)], 2, 3)
    assert next_due(any_engine, route) is None


def test_an_on_demand_check_brings_a_pending_route_forward_and_leaves_a_settled_one(engine):
    server = start_http_upstream()
    try:
        failing = add_route(engine, upstreams=ups(f"127.0.0.1:{free_port()}"), health_check_interval=30)
        fine = add_route(engine, upstreams=ups(server.address), health_check_interval=30)
        settings = fast_settings()
        for route in (failing, fine):
            _set_schedule(engine, route, "healthy", "HH", NOW + 20)
        clock = lambda: NOW  # noqa: E731
        with engine.connect() as conn:
            from tasks.health.store import load_routes

            rows = load_routes(conn, [failing, fine])
        report = run_batch(engine, settings, route_rows=rows, clock=clock)  # as `health` does
        assert sorted(r.status for r in report.results) == ["healthy", "unhealthy"]
        assert next_due(engine, failing) == NOW + 5
        assert next_due(engine, fine) == NOW + 20
        # off: nothing moves
        for route in (failing, fine):
            with write_transaction(engine) as conn:
                conn.execute(
                    route_health_state.update()
                    .where(route_health_state.c.route_id == route)
                    .values(next_due_at=NOW + 20, recent="HH", status="healthy",
                            consecutive_failures=0)
                )
        run_batch(engine, fast_settings(0), route_rows=rows, clock=clock)
        assert (next_due(engine, failing), next_due(engine, fine)) == (NOW + 20, NOW + 20)
    finally:
        server.stop()


# --- the setting ------------------------------------------------------------------------


def test_the_fast_interval_setting():
    assert health_settings({}).fast_interval == 5
    assert health_settings({"PROXYOS_HEALTH_FAST_INTERVAL": "0"}).fast_interval == 0
    assert health_settings({"PROXYOS_HEALTH_FAST_INTERVAL": "10"}).fast_interval == 10
    for bad in ("-1", "inf", "nan", "soon", "100000"):
        with pytest.raises(ConfigError) as raised:
            health_settings({"PROXYOS_HEALTH_FAST_INTERVAL": bad})
        assert str(raised.value).startswith("PROXYOS_HEALTH_FAST_INTERVAL=")
