"""Due times: a stable phase per id, the dispatcher's claim, and who is eligible."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import route_health_state, routes, stream_health_state
from tasks.health.schedule import claim_due, next_slot, phase, split
from tasks.health.settings import HealthSettings
from tests.toolkit.factories import add_route, add_stream, ups

NOW = 1_800_000_000.0
SETTINGS = HealthSettings(stream_interval=60)


def next_due(engine, table, key, target):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(table.c.next_due_at).where(table.c[key] == target)
        ).scalar_one()


def test_phase_is_stable_and_spread():
    ids = [f"route-{n}" for n in range(3000)]
    phases = [phase(i, 30) for i in ids]
    assert phases == [phase(i, 30) for i in ids]
    assert all(0 <= p < 30 for p in phases)
    per_second = [0] * 30
    for p in phases:
        per_second[int(p)] += 1
    assert min(per_second) > 50 and max(per_second) < 150  # about 100 each, not all at once
    slot = next_slot("route-1", 30, NOW)
    assert NOW <= slot < NOW + 30 and (slot - phase("route-1", 30)) % 30 == 0


def test_first_claim_spreads_routes_over_their_interval(any_engine):
    ids = [add_route(any_engine, upstreams=ups("127.0.0.1:1"), health_check_interval=60) for _ in range(40)]
    claimed = claim_due(any_engine, SETTINGS, NOW)
    assert all(c.due_at <= NOW + SETTINGS.lookahead for c in claimed)
    assert len(claimed) < len(ids)  # most are due later in the interval
    for route in ids:
        due = next_due(any_engine, route_health_state, "route_id", route)
        assert NOW <= due < NOW + 60 + SETTINGS.lookahead
    claimed_ids = {c.target_id for c in claimed}
    for route in claimed_ids:  # claimed: moved one interval on
        assert next_due(any_engine, route_health_state, "route_id", route) > NOW + 60 - 1


def test_each_due_check_is_claimed_once_per_interval(engine):
    route = add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=30)
    claimed = []
    for step in range(0, 90, 5):  # the dispatcher every 5 s for 90 s
        claimed.extend(c.due_at for c in claim_due(engine, SETTINGS, NOW + step))
    # every slot of the route's phase up to the last run's horizon, each once; how many
    # that is (3 or 4) depends on the phase of the route's random id
    first = next_slot(route, 30, NOW)
    horizon = NOW + 85 + SETTINGS.lookahead
    assert claimed == pytest.approx([first + 30 * k for k in range(4) if first + 30 * k < horizon])
    assert len(claimed) >= 3


def test_interval_change_is_picked_up(engine):
    route = add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=3600)
    claim_due(engine, SETTINGS, NOW)
    with write_transaction(engine) as conn:
        conn.execute(routes.update().values(health_check_interval=10))
    claim_due(engine, SETTINGS, NOW + 5)
    assert (
        next_due(engine, route_health_state, "route_id", route) <= NOW + 5 + 10 + SETTINGS.lookahead
    )


def test_checks_missed_for_long_go_back_on_their_phase(engine):
    for _ in range(30):
        add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=30)
    claim_due(engine, SETTINGS, NOW)
    later = NOW + 3600  # the workers were stopped for an hour
    claimed = claim_due(engine, SETTINGS, later)
    assert len(claimed) < 30  # not all at once
    assert all(later <= c.due_at <= later + SETTINGS.lookahead for c in claimed)


def test_only_eligible_routes_and_streams_are_claimed(engine):
    eligible = {
        add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=5, upstream_type=t)
        for t in ("http", "loadbalance", "tcp")
    }
    add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=5, enabled=0)
    add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=5, archived_at=1)
    add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=5, health_check_enabled=0)
    add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=5, upstream_type="static")
    add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=5, upstream_type="redirect")
    stream = add_stream(engine, "127.0.0.1", 1)
    add_stream(engine, "127.0.0.1", 2, enabled=0)
    claimed = claim_due(engine, HealthSettings(stream_interval=5), NOW)
    assert {c.target_id for c in claimed if c.kind == "route"} == eligible
    assert {c.target_id for c in claimed if c.kind == "stream"} == {stream}
    assert next_due(engine, stream_health_state, "stream_id", stream) > NOW


def test_split_keeps_due_order():
    from tasks.health.schedule import Due

    dues = [Due("route", str(n), float(n)) for n in range(7)]
    assert [[d.target_id for d in b] for b in split(dues, 3)] == [
        ["0", "1", "2"],
        ["3", "4", "5"],
        ["6"],
    ]


def test_status_counts_overdue_checks(engine):
    from tasks.health.status import summary

    route = add_route(engine, upstreams=ups("127.0.0.1:1"), health_check_interval=30)
    claim_due(engine, SETTINGS, NOW)
    with write_transaction(engine) as conn:
        conn.execute(route_health_state.update().values(next_due_at=NOW - 100, last_lateness_ms=40))
    figures = summary(engine, NOW)
    assert (figures["overdue"], figures["most_overdue_s"]) == (1, 100.0)
    assert figures["lateness_p99_ms"] == 40
    assert figures["routes_unknown"] == 1
    assert route
