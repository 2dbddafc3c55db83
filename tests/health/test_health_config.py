"""Bad configuration: that route gets an `unhealthy` row whose error starts with
`config:`; every other route is checked as usual."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from db.schema import health_checks
from tasks.health.batch import run_batch
from tasks.health.config import route_check
from tasks.health.settings import HealthSettings
from tests.toolkit.factories import add_route, ups

BAD = [
    ({"upstreams": '[{"address": '}, "config: upstreams is not valid JSON"),
    ({"upstreams": "[]"}, "config: upstreams is an empty list"),
    ({"upstreams": ""}, "config: upstreams is empty"),
    ({"upstreams": '{"address": "a:1"}'}, "config: upstreams must be a JSON list"),
    ({"upstreams": '[{"weight": 1}]'}, "config: upstream 1 has no address"),
    ({"upstreams": "[42]"}, "config: upstream 1 must be an object with an address"),
    (
        {"upstreams": '[{"address": "ftp://files:21"}]'},
        "config: upstream 1 address 'ftp://files:21' has scheme 'ftp'",
    ),
    (
        {"upstreams": '[{"address": "host:port"}]'},
        "config: upstream 1 address 'host:port' is not host:port",
    ),
    (
        {"health_check_body_regex": "ready("},
        "config: health_check_body_regex 'ready(' is not a valid regular expression",
    ),
    (
        {"health_check_status_codes": '[200, "ok"]'},
        "config: health_check_status_codes must be a JSON list",
    ),
    ({"health_check_status_codes": "200"}, "config: health_check_status_codes must be a JSON list"),
    ({"health_check_status_codes": "[]"}, "config: health_check_status_codes must be a JSON list"),
    (
        {"health_check_status_codes": "[200, 700]"},
        "config: health_check_status_codes must be a JSON list",
    ),
    (
        {"health_check_status_codes": "not json"},
        "config: health_check_status_codes must be a JSON list",
    ),
    (
        {"upstream_protocol": "gopher"},
        "config: upstream_protocol 'gopher' is not one of http, https-trusted, https-insecure",
    ),
    (
        {"health_check_interval": 0},
        "config: health_check_interval must be a whole number of seconds from 1 to 86400",
    ),
    (
        {"health_check_max_response_ms": -5},
        "config: health_check_max_response_ms must be a positive",
    ),
    (
        {"upstream_type": "tcp", "upstreams": '[{"address": "db.internal"}]'},
        "config: upstream 1 address 'db.internal' needs a port",
    ),
]


@pytest.mark.parametrize(("columns", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_configuration_is_reported_and_others_are_checked(
    engine, settings, upstream, columns, expected
):
    columns = dict(columns)
    bad = add_route(
        engine, upstreams=columns.pop("upstreams", [{"address": upstream.address}]), name="bad", **columns
    )
    good = add_route(engine, upstreams=ups(upstream.address), name="good")
    report = run_batch(engine, settings, [(bad, None), (good, None)])
    by_id = {r.target_id: r for r in report.results}
    assert by_id[good].status == "healthy"
    assert by_id[bad].status == "unhealthy"
    assert by_id[bad].error.startswith(expected), by_id[bad].error
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(health_checks).where(health_checks.c.route_id == bad))
            .mappings()
            .one()
        )
    assert row["overall_status"] == "unhealthy"
    assert row["error"].startswith("config: ")
    if "body_regex" not in expected:
        assert len(upstream.seen) == 1  # only the good route was probed


def _row(**columns):
    return {
        "id": "r1",
        "name": "r1",
        "upstream_type": "http",
        "upstreams": '[{"address": "a:1"}]',
        "health_check_interval": 30,
        "health_check_path": "/",
        "upstream_protocol": "http",
        **columns,
    }


def test_urls_are_built_from_address_protocol_and_path():
    settings = HealthSettings()
    check = route_check(
        _row(
            upstreams='[{"address": "10.0.0.1:8080"}, {"address": "https://b.test"},'
            ' {"address": "[::1]:9000"}, "c.test"]',
            health_check_path="status",
            upstream_protocol="https-insecure",
        ),
        settings,
    )
    assert [t.url for t in check.targets] == [
        "https://10.0.0.1:8080/status",
        "https://b.test:443/status",
        "https://[::1]:9000/status",
        "https://c.test:443/status",
    ]
    assert not any(t.verify_tls for t in check.targets)


def test_defaults_and_timeout():
    check = route_check(_row(health_check_interval=3), HealthSettings(timeout=5))
    assert check.status_codes == {200, 201, 204, 301, 302}
    assert check.timeout == 3
    assert check.interval == 5  # nothing runs more often than the dispatcher
    assert route_check(_row(), HealthSettings(timeout=5)).timeout == 5


def test_tcp_route_targets():
    check = route_check(
        _row(upstream_type="tcp", upstreams='[{"address": "db:5432"}]'), HealthSettings()
    )
    assert check.kind == "tcp"
    assert [(t.host, t.port, t.url) for t in check.targets] == [("db", 5432, None)]
