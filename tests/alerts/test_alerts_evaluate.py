"""Rules into alert_events and notifications: hold, cooldown, recovery, grouping, the
certificate rules, and a restart that resends nothing."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from db.schema import alert_events, alert_rules
from tasks.alerts import rules
from tasks.alerts.evaluate import evaluate
from tests.toolkit.factories import add_alert_rule, add_certificate, add_route, add_stream, set_system_setting

from .conftest import deliver_all, set_route_status

NOW = int(time.time()) - 3600  # evaluations run at NOW + offset: in the past, so what they queue is due at once


def _events(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(alert_events).order_by(alert_events.c.fired_at,
                                                                                alert_events.c.message)).mappings()]


def _at(engine, offset: float) -> dict:
    return evaluate(engine, clock=lambda: NOW + offset)


def test_down_then_up_gives_one_down_and_one_recovery_message(any_engine, receiver):
    set_system_setting(any_engine, "alert_webhook", receiver.url)
    route = add_route(any_engine, domain="shop.example.test")
    rule = add_alert_rule(any_engine, "route_unhealthy", {"groupSeconds": 0}, name="routes down")
    set_route_status(any_engine, route, "healthy", NOW - 100)
    assert _at(any_engine, 0)["events"] == 0
    set_route_status(any_engine, route, "unhealthy", NOW)
    assert _at(any_engine, 1)["notifications"] == 1
    assert _at(any_engine, 2)["events"] == 0  # still down: said once
    set_route_status(any_engine, route, "healthy", NOW + 30)
    assert _at(any_engine, 31)["events"] == 1
    deliver_all(any_engine)
    bodies = [r.body for r in receiver.requests]
    assert [(b["event"], b["message"]) for b in bodies] == [
        ("alert.fired", "Route shop.example.test is unhealthy: refused"),
        ("alert.resolved", "Route shop.example.test is healthy again"),
    ]
    assert bodies[0]["rule"] == "routes down" and bodies[0]["source"] == "proxyos"
    events = _events(any_engine)
    assert [e["route_id"] for e in events] == [route, route] and events[0]["rule_id"] == rule
    with any_engine.connect() as conn:
        assert conn.execute(sa.select(alert_rules.c.last_fired_at)).scalar() == NOW + 31


def test_hold_minutes(engine):
    route = add_route(engine)
    add_alert_rule(engine, "route_unhealthy", {"holdMinutes": 2, "groupSeconds": 0})
    set_route_status(engine, route, "unhealthy", NOW)
    assert _at(engine, 60)["events"] == 0
    assert _at(engine, 120)["events"] == 1


def test_a_flapping_route_fires_once_per_cooldown(engine):
    route = add_route(engine)
    add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0, "cooldownMinutes": 10, "recovery": False})
    fired = 0
    for minute in range(0, 10):
        set_route_status(engine, route, "unhealthy" if minute % 2 == 0 else "healthy", NOW + minute * 60)
        fired += _at(engine, minute * 60 + 1)["events"]
    assert fired == 1
    set_route_status(engine, route, "unhealthy", NOW + 600)
    assert _at(engine, 601)["events"] == 1  # the cooldown has passed


def test_twenty_routes_down_together_give_one_grouped_message(any_engine, receiver):
    set_system_setting(any_engine, "alert_webhook", receiver.url)
    routes = [add_route(any_engine, domain=f"r{i:02}.example.test") for i in range(20)]
    add_alert_rule(any_engine, "route_unhealthy", {"groupSeconds": 30})
    for i, route in enumerate(routes):  # as the checks' phases spread them over an interval
        set_route_status(any_engine, route, "unhealthy", NOW + i)
        assert _at(any_engine, i)["events"] == 0
    assert _at(any_engine, 30)["events"] == 1
    deliver_all(any_engine)
    [message] = [r.body for r in receiver.requests]
    assert message["message"].startswith("20 routes unhealthy: r00.example.test, ")
    assert message["message"].endswith("and 10 more")
    assert message["detail"]["count"] == 20 and len(message["detail"]["targets"]) == 20
    assert _events(any_engine)[0]["route_id"] is None


def test_one_route_targeted_and_streams(engine):
    one, other = add_route(engine), add_route(engine)
    stream = add_stream(engine)
    add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0}, target_route_id=one)
    add_alert_rule(engine, "stream_unhealthy", {"groupSeconds": 0, "streamId": stream})
    for route in (one, other):
        set_route_status(engine, route, "unhealthy", NOW)
    from db.engine import write_transaction
    from db.schema import stream_health_state
    with write_transaction(engine) as conn:
        conn.execute(stream_health_state.insert().values(stream_id=stream, status="unhealthy", status_since=NOW))
    assert _at(engine, 1)["events"] == 2
    messages = sorted(e["message"] for e in _events(engine))
    assert messages[0].startswith(f"Route {one.lower()}.example.test is unhealthy")
    assert messages[1].startswith("Stream port ")


def test_certificate_rules(engine):
    failing = add_certificate(engine, "fail.example.test", status="active", failures=3, last_error="DNS said no")
    broken = add_certificate(engine, "broken.example.test", status="error")
    ok = add_certificate(engine, "ok.example.test", status="active", expires_at=NOW + 20 * 86400)
    soon = add_certificate(engine, "soon.example.test", status="active", expires_at=NOW + 5 * 86400)
    add_alert_rule(engine, "cert_renewal_failed", {"groupSeconds": 0, "failures": 3})
    add_alert_rule(engine, "cert_expiring_each", {"groupSeconds": 0, "thresholdsDays": [30, 14, 7]})
    _at(engine, 0)
    by_rule = {json.loads(e["detail"])["targets"][0].get("thresholdDays") is None: json.loads(e["detail"])
               for e in _events(engine)}
    assert {t["certificateId"] for t in by_rule[True]["targets"]} == {failing, broken}
    assert {(t["certificateId"], t["thresholdDays"]) for t in by_rule[False]["targets"]} == {(ok, 30), (soon, 7)}
    assert _at(engine, 60)["events"] == 0  # once per threshold
    assert _at(engine, 7 * 86400)["events"] == 1  # ok.example.test crosses 14 days; soon has expired


def test_the_state_of_a_target_no_longer_seen_is_deleted(engine):
    cert = add_certificate(engine, "renewed.example.test", status="active", expires_at=NOW + 20 * 86400)
    route = add_route(engine)
    add_alert_rule(engine, "cert_expiring_each", {"groupSeconds": 0, "thresholdsDays": [30, 14]})
    add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0})
    set_route_status(engine, route, "unhealthy", NOW)
    assert _at(engine, 0)["events"] == 2

    def targets() -> list[str]:
        with engine.connect() as conn:
            return sorted(conn.execute(sa.text("SELECT target FROM alert_state")).scalars())

    assert targets() == [f"cert:{cert}:{NOW + 20 * 86400}:30", f"route:{route}"]
    with engine.begin() as conn:  # renewed: a new expiry, 90 days away; the route is deleted
        conn.execute(sa.text("UPDATE certificates SET expires_at = :e WHERE id = :i"),
                     {"e": NOW + 90 * 86400, "i": cert})
        conn.execute(sa.text("DELETE FROM route_health_state"))
        conn.execute(sa.text("DELETE FROM routes"))
    assert _at(engine, 60)["events"] == 0
    assert targets() == []


def test_a_restart_resends_nothing(engine, receiver):
    set_system_setting(engine, "alert_webhook", receiver.url)
    route = add_route(engine)
    add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0})
    set_route_status(engine, route, "unhealthy", NOW)
    _at(engine, 1)
    deliver_all(engine)
    for offset in (2, 3, 4):  # a new process evaluates and delivers again: all state is in the database
        assert _at(engine, offset)["events"] == 0
        deliver_all(engine)
    assert len(receiver.requests) == 1


def test_one_bad_rule_is_reported_and_the_others_fire(engine):
    route = add_route(engine)
    bad = add_alert_rule(engine, "route_unhealthy", "{nope", name="bad one")
    add_alert_rule(engine, "route_unhealthy", {"groupSeconds": 0})
    add_alert_rule(engine, "error_rate_spike", {"errorRatePct": 5})  # ProxyOS's: not ours
    set_route_status(engine, route, "unhealthy", NOW)
    summary = _at(engine, 1)
    assert summary["events"] == 1
    assert summary["problems"] == {bad: "alert rule 'bad one': config is not a JSON object"}


_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8)),
                     lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(rules.TYPES)),
       st.one_of(st.text(max_size=30),
                 st.dictionaries(st.sampled_from(["cooldownMinutes", "groupSeconds", "holdMinutes", "recovery",
                                                  "failures", "thresholdsDays", "daysBeforeExpiry", "streamId",
                                                  "windowMinutes"]), _json).map(json.dumps)))
def test_any_rule_config_is_valid_or_one_clear_error(type_, text):
    try:
        config = rules.parse_config("r", type_, text)
    except rules.RuleError as exc:
        assert str(exc).startswith("alert rule 'r': ")
    else:
        assert set(config) == set(rules.TYPES[type_])
        assert 1 <= config["cooldownMinutes"] <= 1440
