"""HTTP(S) checks against real loopback servers: every status rule and error wording."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from db.schema import health_checks
from tasks.health.batch import run_batch
from tests.toolkit.factories import add_route, ups


def check(engine, settings, route_id):
    report = run_batch(engine, settings, [(route_id, None)])
    assert not report.write_errors
    (result,) = report.results
    return result


def rows(engine, route_id):
    with engine.connect() as conn:
        return (
            conn.execute(sa.select(health_checks).where(health_checks.c.route_id == route_id))
            .mappings()
            .all()
        )


def test_healthy_route_writes_one_row(engine, settings, upstream):
    route = add_route(engine, upstreams=ups(upstream.address), health_check_path="/health")
    result = check(engine, settings, route)
    assert (result.status, result.error, result.status_code) == ("healthy", None, 200)
    (row,) = rows(engine, route)
    assert row["overall_status"] == "healthy"
    assert row["status_code"] == 200
    assert row["response_time_ms"] is not None
    assert row["body_matched"] is None  # no regex configured
    assert upstream.seen[0]["path"] == "/health"


def test_every_upstream_is_checked_and_one_down_is_degraded(
    engine, settings, upstream, upstream2, closed_port
):
    route = add_route(engine, upstreams=ups(upstream.address, upstream2.address, closed_port))
    result = check(engine, settings, route)
    assert result.status == "degraded"
    assert result.error == f"{closed_port}: connection refused"
    assert len(upstream.seen) == 1 and len(upstream2.seen) == 1
    assert result.status_code == 200  # the first upstream's


def test_all_upstreams_down_is_unhealthy_and_names_each(engine, settings, closed_port, blackhole):
    route = add_route(engine, upstreams=ups(closed_port, blackhole.address))
    result = check(engine, settings, route)
    assert result.status == "unhealthy"
    assert (
        result.error
        == f"{closed_port}: connection refused; {blackhole.address}: timed out after 1 s"
    )
    assert result.status_code is None


def test_status_not_accepted(engine, settings, upstream):
    route = add_route(
        engine,
        upstreams=ups(upstream.address),
        health_check_path="/?code=503",
        health_check_status_codes="[200, 204]",
    )
    result = check(engine, settings, route)
    assert result.status == "unhealthy"
    assert result.error == f"{upstream.address}: status 503 not in [200, 204]"
    assert rows(engine, route)[0]["status_code"] == 503


def test_default_codes_accept_redirects_without_following_them(engine, settings, upstream):
    route = add_route(
        engine, upstreams=ups(upstream.address), health_check_path="/?code=302&location=/elsewhere"
    )
    result = check(engine, settings, route)
    assert (result.status, result.status_code) == ("healthy", 302)
    assert [s["path"] for s in upstream.seen] == ["/?code=302&location=/elsewhere"]


def test_redirect_not_in_configured_codes(engine, settings, upstream):
    route = add_route(
        engine,
        upstreams=ups(upstream.address),
        health_check_path="/?code=301&location=/x",
        health_check_status_codes="[200]",
    )
    result = check(engine, settings, route)
    assert result.error == f"{upstream.address}: status 301 not in [200]"
    assert len(upstream.seen) == 1


def test_body_regex_matches(engine, settings, upstream):
    route = add_route(
        engine,
        upstreams=ups(upstream.address),
        health_check_path="/?body=status:%20ready",
        health_check_body_regex=r"status: (ready|ok)",
    )
    result = check(engine, settings, route)
    assert (result.status, result.body_matched) == ("healthy", True)
    assert rows(engine, route)[0]["body_matched"] == 1


def test_body_regex_does_not_match(engine, settings, upstream):
    route = add_route(
        engine,
        upstreams=ups(upstream.address),
        health_check_path="/?body=starting",
        health_check_body_regex="ready",
    )
    result = check(engine, settings, route)
    assert result.status == "unhealthy"
    assert result.error == f"{upstream.address}: body did not match"
    assert rows(engine, route)[0]["body_matched"] == 0


def test_body_regex_sees_only_the_first_64_kib(engine, settings, upstream):
    inside = add_route(
        engine,
        upstreams=ups(upstream.address),
        health_check_path=f"/?size={64 * 1024 - 5}&tail=READY",
        health_check_body_regex="READY",
    )
    beyond = add_route(
        engine,
        upstreams=ups(upstream.address),
        health_check_path=f"/?size={64 * 1024}&tail=READY",
        health_check_body_regex="READY",
    )
    report = run_batch(engine, settings, [(inside, None), (beyond, None)])
    by_id = {r.target_id: r for r in report.results}
    assert by_id[inside].body_matched is True
    assert by_id[beyond].body_matched is False


def test_slow_response_is_degraded(engine, settings, upstream):
    route = add_route(
        engine,
        upstreams=ups(upstream.address),
        health_check_path="/?delay=0.3",
        health_check_max_response_ms=100,
    )
    result = check(engine, settings, route)
    assert result.status == "degraded"
    assert result.error.startswith(f"{upstream.address}: slow: ")
    assert result.error.endswith(" ms > 100 ms")
    assert result.response_time_ms >= 300


def test_fast_response_within_limit_is_healthy(engine, settings, upstream):
    route = add_route(engine, upstreams=ups(upstream.address), health_check_max_response_ms=5000)
    assert check(engine, settings, route).status == "healthy"


def test_timeout_is_capped_by_the_interval(engine, settings, blackhole):
    route = add_route(engine, upstreams=ups(blackhole.address), health_check_interval=1)
    long_timeout = dataclasses.replace(settings, timeout=60.0)
    result = check(engine, long_timeout, route)
    assert result.error == f"{blackhole.address}: timed out after 1 s"


def test_dns_name_not_found(engine, settings):
    route = add_route(engine, upstreams=ups("no-such-backend.invalid:8080"))
    result = check(engine, settings, route)
    assert result.status == "unhealthy"
    assert (
        result.error == "no-such-backend.invalid:8080: DNS name not found (no-such-backend.invalid)"
    )


def test_address_with_scheme_and_credentials_never_shows_them(engine, settings, upstream):
    route = add_route(
        engine,
        upstreams=ups(f"http://admin:s3cret-pw@{upstream.address}/base"),
        health_check_path="/health?code=500",
    )
    result = check(engine, settings, route)
    assert "s3cret" not in result.error
    assert (
        result.error
        == f"http://{upstream.address}/base: status 500 not in [200, 201, 204, 301, 302]"
    )
    assert upstream.seen[0]["path"] == "/base/health?code=500"
