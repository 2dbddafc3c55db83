"""The flap-free state machine, alone and as written with the results."""

from __future__ import annotations

import sqlalchemy as sa

from db.schema import health_events, route_health_state
from tasks.health.state import UNKNOWN, State, advance
from tasks.health.store import write_results
from tasks.health.verdict import CheckResult
from tests.toolkit.factories import add_route, add_stream, ups


def run(results: str, rise: int = 2, fall: int = 3, start: State | None = None):
    """Feed results (H, D, U letters); returns the status after each and the changes."""
    names = {"H": "healthy", "D": "degraded", "U": "unhealthy"}
    state, statuses, changes = start or State(), [], []
    for n, letter in enumerate(results):
        state, change = advance(state, names[letter], 1000 + n, rise, fall)
        statuses.append(state.status)
        if change:
            changes.append((change.from_status, change.to_status, change.reason))
    return state, statuses, changes


def test_new_target_becomes_healthy_after_rise_results():
    state, statuses, changes = run("HH")
    assert statuses == [UNKNOWN, "healthy"]
    assert changes == [("unknown", "healthy", "2 consecutive checks healthy")]
    assert state.status_since == 1001


def test_new_target_becomes_unhealthy_after_fall_results():
    _, statuses, changes = run("UUU")
    assert statuses == [UNKNOWN, UNKNOWN, "unhealthy"]
    assert changes == [("unknown", "unhealthy", "3 consecutive checks unhealthy")]


def test_healthy_needs_fall_failures_to_go_down():
    _, statuses, _ = run("HHUUHUUU")
    assert statuses == [
        "unknown",
        "healthy",
        "healthy",
        "healthy",
        "healthy",
        "healthy",
        "healthy",
        "unhealthy",
    ]


def test_unhealthy_needs_rise_successes_to_come_back():
    _, statuses, changes = run("UUUHUHH")
    assert statuses[-1] == "healthy"
    assert statuses[:6] == [
        "unknown",
        "unknown",
        "unhealthy",
        "unhealthy",
        "unhealthy",
        "unhealthy",
    ]
    assert [c[1] for c in changes] == ["unhealthy", "healthy"]


def test_alternating_results_never_flap():
    _, statuses, changes = run("HH" + "UH" * 20)
    assert set(statuses[1:]) == {"healthy"}
    assert len(changes) == 1


def test_mixed_bad_results_move_to_degraded():
    _, statuses, changes = run("HHUDU")
    assert statuses[-1] == "degraded"
    assert changes[-1] == ("healthy", "degraded", "3 consecutive checks degraded or worse")


def test_degraded_to_unhealthy_and_back_up_through_degraded():
    _, statuses, changes = run("HHDDDUUUDD")
    assert [c[1] for c in changes] == ["healthy", "degraded", "unhealthy", "degraded"]
    assert changes[-1][2] == "2 consecutive checks degraded or better"


def test_counters_of_consecutive_successes_and_failures():
    state, _, _ = run("HHUU")
    assert (state.consecutive_successes, state.consecutive_failures) == (0, 2)
    state, _, _ = run("UDH")
    assert (state.consecutive_successes, state.consecutive_failures) == (2, 0)


def test_thresholds_are_configurable():
    _, statuses, _ = run("HU", rise=1, fall=1)
    assert statuses == ["healthy", "unhealthy"]
    _, statuses, _ = run("HHHHUUUU", rise=4, fall=4)
    assert statuses[3] == "healthy" and statuses[6] == "healthy" and statuses[7] == "unhealthy"


def _result(kind, target, status, at, error=None):
    return CheckResult(kind, target, target, status, at, error=error)


def test_state_and_events_are_written_with_the_results(any_engine):
    route = add_route(any_engine, upstreams=ups("127.0.0.1:1"))
    stream = add_stream(any_engine, "127.0.0.1", 1)
    t = 1_700_000_000
    for n, status in enumerate(["healthy", "healthy", "unhealthy", "unhealthy", "unhealthy"]):
        error = "127.0.0.1:1: connection refused" if status == "unhealthy" else None
        write_results(
            any_engine,
            [
                _result("route", route, status, t + n, error),
                _result("stream", stream, status, t + n, error),
            ],
            rise=2,
            fall=3,
        )
    with any_engine.connect() as conn:
        state = conn.execute(sa.select(route_health_state)).mappings().one()
        events = (
            conn.execute(
                sa.select(health_events).order_by(
                    health_events.c.created_at, health_events.c.target_type
                )
            )
            .mappings()
            .all()
        )
    assert state["status"] == "unhealthy"
    assert state["status_since"] == t + 4
    assert (state["consecutive_failures"], state["consecutive_successes"]) == (3, 0)
    assert state["last_error"] == "127.0.0.1:1: connection refused"
    assert [
        (e["target_type"], e["from_status"], e["to_status"], e["created_at"]) for e in events
    ] == [
        ("route", "unknown", "healthy", t + 1),
        ("stream", "unknown", "healthy", t + 1),
        ("route", "healthy", "unhealthy", t + 4),
        ("stream", "healthy", "unhealthy", t + 4),
    ]
    assert events[2]["reason"] == "3 consecutive checks unhealthy: 127.0.0.1:1: connection refused"
    assert events[2]["target_id"] == route


def test_results_for_one_target_in_one_write_apply_in_order(engine):
    route = add_route(engine, upstreams=ups("127.0.0.1:1"))
    write_results(engine, [_result("route", route, "healthy", 10 + n) for n in range(2)], 2, 3)
    with engine.connect() as conn:
        assert conn.execute(sa.select(route_health_state.c.status)).scalar_one() == "healthy"


def test_results_of_a_deleted_route_are_dropped(engine):
    from db.engine import write_transaction
    from db.schema import routes

    kept = add_route(engine, upstreams=ups("127.0.0.1:1"))
    gone = add_route(engine, upstreams=ups("127.0.0.1:1"))
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(routes).where(routes.c.id == gone))
    write_results(
        engine, [_result("route", kept, "healthy", 1), _result("route", gone, "healthy", 1)], 2, 3
    )
    with engine.connect() as conn:
        assert conn.execute(sa.select(route_health_state.c.route_id)).scalars().all() == [kept]


def test_an_on_demand_check_keeps_the_last_scheduled_lateness(any_engine):
    from dataclasses import replace

    route = add_route(any_engine, upstreams=ups("127.0.0.1:1"))
    scheduled = replace(_result("route", route, "healthy", 1), lateness_ms=120)
    write_results(any_engine, [scheduled], 2, 3)
    write_results(any_engine, [_result("route", route, "healthy", 2)], 2, 3)  # on demand
    with any_engine.connect() as conn:
        state = conn.execute(sa.select(route_health_state)).mappings().one()
    assert (state["last_lateness_ms"], state["last_checked_at"]) == (120, 2)
