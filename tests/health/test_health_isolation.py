"""No bad input stops a check run (issue 12): a catastrophic body regex costs only its own
route, regex syntax RE2 does not support is a `config:` error, and any value in a route or
stream row that cannot be turned into a check is a `config:` row for that item alone,
through every path (`health-dispatch`, `health-batch`, `run-once health`)."""

from __future__ import annotations

import subprocess
import time

import pytest
import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import health_checks, route_health_state, routes, stream_health_checks, streams
from tasks.health.batch import run_batch
from tests.toolkit.factories import add_route, add_stream, ups
from tests.toolkit.processes import run_cli
from workers import config
from workers.config import ConfigError
from workers.registry import JobContext, discover
from workers.runner import run_job
from workers.settings.health import load as health_settings

DEEP = 100_000  # far past Python's recursion limit


def _errors(engine, table=health_checks, key="route_id") -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c[key], table.c.error)).all())


def _statuses(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(health_checks.c.route_id, health_checks.c.overall_status)).all())


def test_a_catastrophic_regex_delays_no_other_route(engine, settings, upstream):
    """`(x+)+$` against 25 `x` then `y` takes a backtracking engine seconds, during which
    it held the probing loop: the good routes due meanwhile began seconds late."""
    hostile = add_route(
        engine,
        upstreams=ups(upstream.address),
        name="hostile",
        health_check_path="/?size=25&tail=y",
        health_check_body_regex="(x+)+$",
    )
    good = [add_route(engine, upstreams=ups(upstream.address), name=f"good-{n}", health_check_body_regex="ok")
            for n in range(5)]
    start = time.time() + 0.3
    pairs = [(hostile, start)] + [(g, start + 0.1 * (n + 1)) for n, g in enumerate(good)]
    by_id = {r.target_id: r for r in run_batch(engine, settings, pairs).results}
    assert by_id[hostile].status == "unhealthy"
    assert by_id[hostile].error == f"{upstream.address}: body did not match"
    assert all(by_id[g].status == "healthy" for g in good)
    # Not a timing test (bench/health.py --hostile-regex measures the delay): 10x the
    # 100 ms goal, where the backtracking engine made them seconds late.
    assert max(by_id[g].lateness_ms for g in good) < 1000


def test_run_once_health_returns_with_a_catastrophic_regex_on_64_kib(engine, worker_env, upstream):
    """The issue's case: the run never returned, wrote no row for anyone."""
    hostile = add_route(
        engine,
        upstreams=ups(upstream.address),
        name="hostile",
        health_check_path=f"/?size={64 * 1024 - 1}&tail=y",
        health_check_body_regex="(x+)+$",
    )
    good = add_route(engine, upstreams=ups(upstream.address), name="good")
    try:
        done = run_cli(["run-once", "health"], {**worker_env, "PROXYOS_HEALTH_TIMEOUT": "2"}, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("run-once health did not return within 60 s")
    assert done.returncode == 0, done.stderr
    errors = _errors(engine)
    assert errors == {hostile: f"{upstream.address}: body did not match", good: None}


def test_a_costly_regex_re2_accepts_costs_its_route_at_most_the_timeout(engine, worker_env, upstream):
    """`[ab]*a[ab]{990}c` is within RE2's limits, but on 64 KiB of mixed `a` and `b` its
    search takes RE2 about 2 s (a backtracking engine: far longer). The route's result
    comes at its timeout; the other route is checked as usual."""
    costly = add_route(
        engine,
        upstreams=ups(upstream.address),
        health_check_path=f"/?ab={64 * 1024}",
        health_check_body_regex="[ab]*a[ab]{990}c",
    )
    good = add_route(engine, upstreams=ups(upstream.address), health_check_body_regex="ok")
    try:
        done = run_cli(["run-once", "health"], {**worker_env, "PROXYOS_HEALTH_TIMEOUT": "0.2"}, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("run-once health did not return within 60 s")
    assert done.returncode == 0, done.stderr
    assert _errors(engine) == {costly: f"{upstream.address}: timed out after 0.2 s", good: None}


UNSUPPORTED = [
    ("ok(?=!)", "lookahead"),
    ("ok(?!!)", "lookahead"),
    ("(?<=a)ok", "lookbehind"),
    ("(?<!a)ok", "lookbehind"),
    (r"(o)\1", "backreferences"),
    (r"(?P<o>o)(?P=o)", "backreferences"),
    (r"(?<o>o)\k<o>", "backreferences"),
    ("(?>ok)", "atomic groups"),
    ("o++k", "possessive"),
    (r"ok\Z", r"use \z"),
    (r"\u006fk", r"\x{"),
    ("o{1001}", "repetition counts above 1000"),
]


@pytest.mark.parametrize(("regex", "named"), UNSUPPORTED, ids=[r for r, _ in UNSUPPORTED])
def test_regex_syntax_re2_does_not_support_is_a_config_error(engine, settings, upstream, regex, named):
    bad = add_route(engine, upstreams=ups(upstream.address), health_check_body_regex=regex)
    good = add_route(engine, upstreams=ups(upstream.address), health_check_body_regex="ok")
    by_id = {r.target_id: r for r in run_batch(engine, settings, [(bad, None), (good, None)]).results}
    assert by_id[good].status == "healthy"
    error = by_id[bad].error
    assert error.startswith("config: health_check_body_regex "), error
    assert "RE2" in error and named in error, error
    assert len(upstream.seen) == 1  # nothing probed for the bad route


TOO_BIG = [
    ("(" * 5000 + ")" * 5000, "characters"),  # Python's re: RecursionError
    (r"\w{200}" * 10 + "!", "too large"),  # linear, but with a large factor
]


@pytest.mark.parametrize(("regex", "said"), TOO_BIG, ids=["deeply-nested", "huge-program"])
def test_a_regex_too_large_to_bound_is_a_config_error(engine, settings, upstream, regex, said):
    bad = add_route(engine, upstreams=ups(upstream.address), health_check_body_regex=regex)
    good = add_route(engine, upstreams=ups(upstream.address))
    by_id = {r.target_id: r for r in run_batch(engine, settings, [(bad, None), (good, None)]).results}
    assert by_id[good].status == "healthy"
    assert by_id[bad].error.startswith("config: health_check_body_regex "), by_id[bad].error
    assert said in by_id[bad].error
    assert len(by_id[bad].error) < 400  # the pattern is shown shortened


@pytest.mark.parametrize(
    ("body", "regex", "matched"),
    [
        ("ok%0A", "ok$", False),  # `$` is the end of the text, as in the dashboard (JavaScript)
        ("%D9%A3", r"\d", False),  # \d is ASCII, as in JavaScript and Caddy
        ("%C3%A9t%C3%A9", r"^\w+$", False),
        ("%C3%A9t%C3%A9", r"^\p{Latin}+$", True),
        ("Status: OK", "(?i)status: ok", True),
        ("a%0Ab", "a.b", False),
        ("a%0Ab", "(?s)a.b", True),
    ],
)
def test_regex_follows_the_dashboard_where_python_differs(engine, settings, upstream, body, regex, matched):
    route = add_route(
        engine, upstreams=ups(upstream.address), health_check_path=f"/?body={body}", health_check_body_regex=regex
    )
    (result,) = run_batch(engine, settings, [(route, None)]).results
    assert result.body_matched is matched, result.error


# --- item isolation -----------------------------------------------------------------------

BAD_ROUTES = [
    ({"upstreams": "[" * DEEP + "]" * DEEP}, "config: upstreams is nested too deeply"),
    ({"upstreams": '[{"address": ' * DEEP}, "config: upstreams is nested too deeply"),
    ({"health_check_status_codes": "[" * DEEP + "]" * DEEP}, "config: health_check_status_codes"),
    ({"health_check_status_codes": "[1e999]"}, "config: health_check_status_codes"),
    ({"upstreams": "[" * 500 + "]" * 500}, "config: upstream 1 must be an object"),
    ({"health_check_interval": 10**9}, "config: health_check_interval must be a whole number of seconds"),
]

BAD_ROUTE_IDS = [f"{n}-{next(iter(columns))}" for n, (columns, _) in enumerate(BAD_ROUTES)]


@pytest.mark.parametrize(("columns", "expected"), BAD_ROUTES, ids=BAD_ROUTE_IDS)
def test_any_bad_route_value_is_a_config_row_and_the_rest_are_checked(
    any_engine, settings, upstream, columns, expected
):
    columns = dict(columns)
    bad = add_route(any_engine, upstreams=columns.pop("upstreams", ups(upstream.address)), **columns)
    good = add_route(any_engine, upstreams=ups(upstream.address))
    report = run_batch(any_engine, settings, [(bad, None), (good, None)])
    assert not report.write_errors
    errors = _errors(any_engine)
    assert errors[good] is None and _statuses(any_engine)[good] == "healthy"
    assert errors[bad].startswith(expected), errors[bad][:300]
    assert len(errors[bad]) < 600
    assert len(upstream.seen) == 1


def _sqlite_set(engine, table, row_id: str, **values) -> None:
    """Values only SQLite's type affinity lets in (text in an INTEGER column, blobs)."""
    with write_transaction(engine) as conn:
        conn.execute(table.update().where(table.c.id == row_id).values(**values))


SQLITE_ONLY = [
    ({"health_check_interval": ""}, "config: health_check_interval must be a whole number of seconds"),
    ({"health_check_interval": "soon"}, "config: health_check_interval must be a whole number of seconds"),
    ({"health_check_interval": 1e308}, "config: health_check_interval must be a whole number of seconds"),
    ({"health_check_interval": 2**62}, "config: health_check_interval must be a whole number of seconds"),
    ({"health_check_max_response_ms": "fast"}, "config: health_check_max_response_ms"),
    ({"health_check_path": b"/\x00"}, "config: health_check_path must be text"),
    ({"health_check_body_regex": b"ok"}, "config: health_check_body_regex must be text"),
    ({"upstreams": b"[]"}, "config: upstreams must be text"),
    ({"health_check_status_codes": b"[200]"}, "config: health_check_status_codes must be text"),
]


@pytest.mark.parametrize(("values", "expected"), SQLITE_ONLY, ids=[repr(v)[:40] for v, _ in SQLITE_ONLY])
def test_values_only_sqlite_lets_in_are_config_rows(engine, settings, upstream, values, expected):
    bad = add_route(engine, upstreams=ups(upstream.address))
    _sqlite_set(engine, routes, bad, **values)
    good = add_route(engine, upstreams=ups(upstream.address))
    run_batch(engine, settings, [(bad, None), (good, None)])
    errors = _errors(engine)
    assert errors[good] is None
    assert errors[bad].startswith(expected), errors[bad]


def test_text_that_is_not_utf8_stops_no_other_route(engine, settings, upstream):
    """The sqlite3 shell can store bytes that are not UTF-8 as TEXT; reading such a row
    used to fail the query that loads every route of the batch."""
    bad = add_route(engine, upstreams=ups(upstream.address))
    renamed = add_route(engine, upstreams=ups(upstream.address))
    good = add_route(engine, upstreams=ups(upstream.address))
    with write_transaction(engine) as conn:
        conn.execute(
            sa.text("UPDATE routes SET upstreams = CAST(X'5B7BFF' AS TEXT) WHERE id = :id"), {"id": bad}
        )
        conn.execute(sa.text("UPDATE routes SET name = CAST(X'FF41' AS TEXT) WHERE id = :id"), {"id": renamed})
    by_id = {r.target_id: r for r in run_batch(engine, settings, [(bad, None), (renamed, None), (good, None)]).results}
    assert by_id[bad].error.startswith("config: upstreams is not valid JSON"), by_id[bad].error
    assert by_id[renamed].status == by_id[good].status == "healthy"
    assert by_id[renamed].name == "\ufffdA"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"upstream_host": b"127.0.0.1"}, "config: upstream_host must be text"),
        ({"upstream_port": "http"}, "config: upstream_port must be 1-65535"),
        ({"upstream_port": 1e308}, "config: upstream_port must be 1-65535"),
        ({"protocol": b"tcp"}, "config: protocol"),
    ],
)
def test_bad_stream_values_are_config_rows(engine, settings, upstream, values, expected):
    host, port = upstream.address.split(":")
    bad = add_stream(engine, host, int(port))
    _sqlite_set(engine, streams, bad, **values)
    good = add_stream(engine, host, int(port))
    run_batch(engine, settings, streams=[(bad, None), (good, None)])
    errors = _errors(engine, stream_health_checks, "stream_id")
    assert errors[good] is None
    assert errors[bad].startswith(expected), errors[bad]


def _context(url, tmp_path, enqueued: list) -> JobContext:
    settings = config.load(
        {
            "PROXYOS_DATABASE_URL": url,
            "PROXYOS_QUEUE_URL": f"sqlite:///{tmp_path}/q.db",
            "PROXYOS_HEALTH_TIMEOUT": "1",
        }
    )
    return JobContext(settings, enqueue=lambda job, delay=None, **o: enqueued.append((job, o)) or "t")


def test_a_text_interval_stops_neither_the_dispatcher_nor_its_batches(engine, sqlite_url, tmp_path, upstream):
    """On SQLite `health_check_interval = ''` is stored as text; it used to fail every
    `health-dispatch` tick. The route is scheduled at the default interval and gets a
    `config:` row; the others are checked."""
    jobs, enqueued = discover(), []
    ctx = _context(sqlite_url, tmp_path, enqueued)
    bad = [add_route(engine, upstreams=ups(upstream.address)) for _ in range(4)]
    for route_id, value in zip(bad, ["", "soon", float("inf"), -1e308], strict=True):
        _sqlite_set(engine, routes, route_id, health_check_interval=value)
    good = add_route(engine, upstreams=ups(upstream.address), health_check_interval=30)
    first = run_job(ctx, jobs["health-dispatch"])
    assert first.status in ("ok", "skipped"), first.error
    with write_transaction(engine) as conn:
        conn.execute(route_health_state.update().values(next_due_at=time.time() - 0.5))
    enqueued.clear()
    result = run_job(ctx, jobs["health-dispatch"])
    assert result.status == "ok", result.error
    assert sorted(r for _, o in enqueued for r in o["routes"]) == sorted([*bad, good])
    for name, options in enqueued:
        batch = run_job(ctx, jobs[name], options)
        assert batch.status == "ok", batch.error
    errors = _errors(engine)
    assert errors[good] is None
    assert all(errors[b].startswith("config: health_check_interval") for b in bad), errors
    with engine.connect() as conn:
        due = dict(conn.execute(sa.select(route_health_state.c.route_id, route_health_state.c.next_due_at)).all())
    assert all(due[b] - time.time() <= 31 for b in bad)  # on the default interval
    ctx.close()


def test_run_once_health_records_every_bad_route_and_checks_the_rest(any_engine, any_url, tmp_path, upstream):
    ctx = _context(any_url, tmp_path, [])
    bad = [
        add_route(any_engine, upstreams="[" * DEEP + "]" * DEEP, name="deep"),
        add_route(any_engine, upstreams=ups(upstream.address), name="codes", health_check_status_codes="[" * DEEP),
        add_route(any_engine, upstreams=ups(upstream.address), name="regex", health_check_body_regex="(?=x)"),
    ]
    good = add_route(any_engine, upstreams=ups(upstream.address), name="good")
    result = run_job(ctx, discover()["health"])
    assert result.status == "ok", result.error
    assert result.summary["checked"] == 4 and result.summary["unhealthy"] == 3
    errors = _errors(any_engine)
    assert errors[good] is None
    assert all(errors[b].startswith("config: ") for b in bad)
    ctx.close()


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROXYOS_HEALTH_TIMEOUT", "inf"),
        ("PROXYOS_HEALTH_TIMEOUT", "1e308"),
        ("PROXYOS_HEALTH_TIMEOUT", "nan"),
        ("PROXYOS_HEALTH_STREAM_INTERVAL", "inf"),
        ("PROXYOS_HEALTH_STREAM_INTERVAL", "1e12"),
        ("PROXYOS_HEALTH_RISE", "1000000"),
        ("PROXYOS_HEALTH_FALL", "99999999999999999999"),
        ("PROXYOS_HEALTH_CONCURRENCY", "10000000"),
        ("PROXYOS_HEALTH_BATCH_SIZE", "1000000000"),
    ],
)
def test_health_numbers_are_range_checked_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as raised:
        health_settings({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}=") and "\n" not in message
    assert " to " in message  # the accepted range, both ends


def test_health_numbers_at_their_maximum_are_accepted():
    settings = health_settings(
        {
            "PROXYOS_HEALTH_TIMEOUT": "3600",
            "PROXYOS_HEALTH_STREAM_INTERVAL": "86400",
            "PROXYOS_HEALTH_RISE": "100",
            "PROXYOS_HEALTH_FALL": "100",
            "PROXYOS_HEALTH_CONCURRENCY": "10000",
            "PROXYOS_HEALTH_BATCH_SIZE": "100000",
        }
    )
    assert (settings.timeout, settings.rise, settings.concurrency) == (3600, 100, 10000)
