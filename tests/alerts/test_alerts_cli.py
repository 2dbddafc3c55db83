"""`proxyos-worker alerts`: rules added, listed, enabled and disabled from the command line
are the rows the evaluator reads; `alerts test` sends through the real channels."""

from __future__ import annotations

import json

import sqlalchemy as sa

from db.schema import alert_rules
from tasks.alerts.rules import load
from tests.toolkit.factories import add_route, set_system_setting
from tests.toolkit.processes import run_cli

PASSWORD = "smtp-pass-Zq81!x"  # the fixture's server accepts this login


def _rules(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(alert_rules)).mappings()]


def _listed(worker_env) -> list[dict]:
    result = run_cli(["alerts", "list", "--json"], worker_env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_rule_added_listed_disabled_and_enabled_is_what_the_evaluator_reads(engine, worker_env):
    route = add_route(engine)
    added = run_cli(["alerts", "add", "route_unhealthy", "Route down", "--route", route,
                     "--config", '{"holdMinutes": 2, "cooldownMinutes": 30}', "--json"], worker_env)
    assert added.returncode == 0, added.stderr
    rule_id = json.loads(added.stdout)["id"]
    [listed] = _listed(worker_env)
    assert listed["id"] == rule_id and listed["enabled"] and listed["route"] == route and listed["problem"] is None
    assert listed["config"]["holdMinutes"] == 2 and listed["config"]["cooldownMinutes"] == 30
    assert listed["config"]["groupSeconds"] == 15  # a default filled in
    with engine.connect() as conn:
        [rule], problems = load(conn)
    assert rule.id == rule_id and rule.target_route_id == route and problems == {}

    assert run_cli(["alerts", "disable", rule_id], worker_env).returncode == 0
    assert not _listed(worker_env)[0]["enabled"]
    with engine.connect() as conn:
        assert load(conn) == ([], {})  # a disabled rule is not evaluated
    assert run_cli(["alerts", "enable", rule_id], worker_env).returncode == 0
    assert _listed(worker_env)[0]["enabled"]


def test_bad_rules_are_refused_with_one_line_and_nothing_written(engine, worker_env):
    cases = [
        (["add", "route_unhealthy", "r", "--config", '{"holdMinutes": -1}'], "holdMinutes"),
        (["add", "route_unhealthy", "r", "--config", "[1, 2]"], "not a JSON object"),
        (["add", "route_unhealthy", "r", "--config", '{"speed": 1}'], "unknown config field 'speed'"),
        (["add", "route_unhealthy", "r", "--route", "no-such-route"], "no route with id 'no-such-route'"),
        (["add", "cert_renewal_failed", "r", "--route", "x"], "--route applies only to route_unhealthy"),
        (["enable", "no-such-rule"], "no alert rule of the workers' types"),
    ]
    for args, expected in cases:
        result = run_cli(["alerts", *args], worker_env)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert _rules(engine) == []


def test_a_rule_of_proxyos_own_type_is_neither_listed_nor_toggled(engine, worker_env):
    with engine.begin() as conn:
        conn.execute(alert_rules.insert().values(id="proxyos-rule", name="5xx", type="error_rate",
                                                 config="{}", enabled=1, created_at=1))
    assert _listed(worker_env) == []
    assert run_cli(["alerts", "disable", "proxyos-rule"], worker_env).returncode == 1
    assert _rules(engine)[0]["enabled"] == 1  # the dashboard's rule is the dashboard's


def test_alerts_test_webhook_posts_proxyos_shape_to_the_receiver(engine, worker_env, receiver):
    set_system_setting(engine, "alert_webhook", receiver.url)
    result = run_cli(["alerts", "test", "webhook"], worker_env)
    assert result.returncode == 0, result.stderr
    assert "answered HTTP 200" in result.stdout
    [received] = receiver.accepted()
    assert received.body["event"] == "alert.test" and received.body["source"] == "proxyos-workers"
    assert set(received.body) == {"source", "event", "rule", "message", "detail", "firedAt"}
    assert received.delivery_id and received.delivery_id in result.stdout


def test_alerts_test_smtp_logs_in_and_sends_without_showing_the_password(engine, worker_env, smtp_server):
    set_system_setting(engine, "alert_smtp", {
        "host": "127.0.0.1", "port": smtp_server.port, "secure": False, "user": "alerts@example.test",
        "pass": PASSWORD, "from": "proxyos@example.test", "to": "ops@example.test"})
    result = run_cli(["alerts", "test", "smtp"], worker_env)
    assert result.returncode == 0, result.stderr
    [message] = smtp_server.messages
    assert message["To"] == "ops@example.test" and "Test notification" in message.get_payload(decode=True).decode()
    assert PASSWORD not in result.stdout + result.stderr


def test_alerts_test_names_a_missing_or_failing_channel(engine, worker_env, receiver):
    missing = run_cli(["alerts", "test", "webhook"], worker_env)
    assert missing.returncode == 1 and "alert_webhook is not set" in missing.stderr
    receiver.script = [500]
    set_system_setting(engine, "alert_webhook", receiver.url)
    failing = run_cli(["alerts", "test", "webhook"], worker_env)
    assert failing.returncode == 1 and "answered HTTP 500" in failing.stderr
    assert receiver.url not in failing.stderr  # a webhook URL may carry a token
