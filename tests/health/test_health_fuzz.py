"""Property-based tests (Hypothesis) of route and stream rows, on SQLite and PostgreSQL.

Each example writes a few routes and a stream with arbitrary and hostile values in the
columns a check is made from, beside a route and a stream known to be good, all pointing
at a real loopback server, then runs the dispatcher's claim and a batch. The property:
the run finishes; every item gets exactly one result row; every item with a value known
to be bad gets a `config:` row and is not probed; every item known to be good is healthy.

The budget is fixed (`EXAMPLES` a test and database, the same examples every run under
the default "ci" profile) so CI stays fast.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.schema import health_checks, stream_health_checks
from tasks.health.batch import run_batch
from tasks.health.schedule import claim_due
from tasks.health.settings import HealthSettings
from tests.toolkit.factories import add_route, add_stream, ups

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # 100 kB values

EXAMPLES = 60
BUDGET = settings(  # derandomized by tests/conftest.py's "ci" profile; HYPOTHESIS_PROFILE=fuzz draws anew
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHECK = HealthSettings(timeout=1.0, udp_wait=0.2, write_delay=0.02)
UPSTREAM = "@UPSTREAM@"  # replaced by the loopback server's address
LISTEN_PORTS = itertools.count(100_000)


@dataclass(frozen=True)
class Value:
    """A column value and what it is known to be: "good", "bad", or None (unknown:
    arbitrary input, which may or may not be a usable configuration)."""

    value: object
    known: str | None


def _text(backend: str) -> st.SearchStrategy[str]:
    # PostgreSQL text holds no NUL; neither driver encodes lone surrogates.
    banned = "\x00" if backend == "postgres" else ""
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=banned), max_size=40)


def _deep(opening: str, closing: str = "") -> st.SearchStrategy[str]:
    return st.integers(1_000, 60_000).map(lambda n: opening * n + closing * n)


def _sqlite_only(backend: str, values: list) -> st.SearchStrategy[Value]:
    """Values only SQLite's type affinity keeps: blobs, text in INTEGER columns, REALs."""
    if backend != "sqlite":
        return st.nothing()
    return st.sampled_from([Value(v, "bad") for v in values])


def _good(*values) -> st.SearchStrategy[Value]:
    return st.sampled_from([Value(v, "good") for v in values])


def _bad(*values) -> st.SearchStrategy[Value]:
    return st.sampled_from([Value(v, "bad") for v in values])


def _unknown(strategy: st.SearchStrategy) -> st.SearchStrategy[Value]:
    return strategy.map(lambda v: Value(v, None))


def _route_columns(backend: str) -> dict[str, st.SearchStrategy[Value]]:
    text = _text(backend)
    json_junk = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    ).map(json.dumps)
    return {
        "upstreams": st.one_of(
            _good(
                json.dumps([{"address": UPSTREAM}]),
                json.dumps([UPSTREAM]),
                json.dumps([{"address": UPSTREAM, "weight": 1e308}]),
            ),
            _deep("[", "]").map(lambda v: Value(v, "bad")),
            _deep('[{"address": ').map(lambda v: Value(v, "bad")),
            _bad("[]", "{}", "null", "1e999", '[{"address": 1e999}]', ""),
            _unknown(st.just('[{"address": "' + "x" * 100_000 + '"}]')),  # a host name, if a bad one
            _unknown(json_junk),
            _unknown(text),
            _sqlite_only(backend, [b"[]", 42, 1.5]),
        ),
        "health_check_status_codes": st.one_of(
            _good(None, "[200]", "[200, 204]", "[100, 599, 200]"),
            _deep("[", "]").map(lambda v: Value(v, "bad")),
            _bad("[1e999]", "[" + "9" * 5000 + "]", "[true]", '"200"', "[]", "{}", "[200.5]", "[-1]"),
            _unknown(json_junk),
            _unknown(text),
            _sqlite_only(backend, [b"[200]", 200, 2.5]),
        ),
        "health_check_body_regex": st.one_of(
            _good(None, "", "ok", "^ok$", "(o)k", "(?i)OK", "o{1,400}k?"),
            _bad("(?=ok)", r"(o)\1", "(?>o)k", "o++", r"\Z", "(", "(" * 5000 + ")" * 5000, r"\w{200}" * 10),
            _unknown(text),
            _sqlite_only(backend, [b"ok"]),  # a number is stored as text, a valid regex
        ),
        "health_check_interval": st.one_of(
            _good(30, 1, 5, 86400),
            _bad(0, -1, 86401, 2**31 - 1, -(2**31)),
            _sqlite_only(backend, ["", "soon", "30s", 1e308, float("inf"), float("-inf"), 2**63 - 1, 1.5, b"30"]),
        ),
        "health_check_max_response_ms": st.one_of(
            _good(None, 60_000, 2**31 - 1),
            _bad(0, -1, -(2**31)),
            _sqlite_only(backend, ["fast", 1e308, 0.5, b"1"]),
        ),
        "health_check_path": st.one_of(
            _good("/", "/health", "health", "/?body=ok"),
            _unknown(text),
            _sqlite_only(backend, [b"/"]),
        ),
        "upstream_protocol": st.one_of(
            _good("http", ""),
            _bad("gopher", "HTTP", "https-trusted "),
            _sqlite_only(backend, [b"http", 1]),
        ),
        "upstream_sni": st.one_of(_good(None), _unknown(text)),  # only sent to https upstreams
        "name": st.one_of(_good(None, "x" * 100_000), _unknown(text)),
    }


# Which columns a check of each type reads (the others cannot make it bad).
READ_BY = {
    "http": {"upstreams", "health_check_status_codes", "health_check_body_regex", "health_check_interval",
             "health_check_max_response_ms", "health_check_path", "upstream_protocol", "upstream_sni", "name"},
    "tcp": {"upstreams", "health_check_interval", "upstream_protocol", "upstream_sni", "name"},
}


@st.composite
def route_rows(draw, backend: str) -> tuple[dict, str | None]:
    """A route row, and what it is known to be ("good", "bad" or None)."""
    kind = draw(st.sampled_from(["http", "loadbalance", "tcp"]))
    columns = _route_columns(backend)
    chosen = draw(st.sets(st.sampled_from(sorted(columns)), max_size=4))
    row, known = {"upstream_type": kind}, []
    for name in chosen:
        value = draw(columns[name])
        row[name] = value.value
        if name in READ_BY["tcp" if kind == "tcp" else "http"]:
            known.append(value.known)
    if "bad" in known:
        return row, "bad"
    return row, "good" if all(k == "good" for k in known) else None


def _stream_columns(backend: str) -> dict[str, st.SearchStrategy[Value]]:
    return {
        "upstream_host": st.one_of(
            _good("127.0.0.1", " 127.0.0.1 ", "[127.0.0.1]"),
            _bad("", "   "),
            _bad("x" * 254, "x" * 100_000),
            _unknown(st.sampled_from(["[", "::1::", "\u2603.invalid", "a..b", "-"])),
            _sqlite_only(backend, [b"127.0.0.1"]),
        ),
        "upstream_port": st.one_of(
            _bad(0, -1, 65536, 2**31 - 1, -(2**31)),
            _sqlite_only(backend, ["http", "", 1e308, float("inf"), 2**63 - 1, 80.5, b"\x00"]),
        ),
        "protocol": st.one_of(
            _good("tcp"),
            _bad("sctp", "TCP", "tcp+", "+"),  # empty means tcp, as the column's default
            _unknown(_text(backend)),
            _sqlite_only(backend, [b"tcp", 6]),
        ),
    }


@st.composite
def stream_rows(draw, backend: str) -> tuple[dict, str | None]:
    columns = _stream_columns(backend)
    chosen = draw(st.sets(st.sampled_from(sorted(columns)), max_size=3))
    row, known = {}, []
    for name in chosen:
        value = draw(columns[name])
        row[name] = value.value
        known.append(value.known)
    if "bad" in known:
        return row, "bad"
    return row, "good" if all(k == "good" for k in known) else None


def _fill(value: object, address: str) -> object:
    return value.replace(UPSTREAM, address) if isinstance(value, str) else value


def _insert_route(engine, address: str, row: dict) -> str:
    columns = {k: _fill(v, address) for k, v in row.items()}
    return add_route(engine, **{"upstreams": ups(address), **columns})


def _insert_stream(engine, address: str, row: dict) -> str:
    host, port = address.split(":")
    columns = {"upstream_host": host, "upstream_port": int(port), "listen_port": next(LISTEN_PORTS), **row}
    return add_stream(engine, **columns)  # listen_port: unique; nothing listens there


def _rows(engine, table, key: str, ids: list[str]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {i: [] for i in ids}
    with engine.connect() as conn:
        for row in conn.execute(sa.select(table).where(table.c[key].in_(ids))).mappings():
            found[row[key]].append(dict(row))
    return found


def _check_property(engine, upstream, route_cases, stream_cases) -> None:
    address = upstream.address
    good_route = _insert_route(engine, address, {})
    good_stream = _insert_stream(engine, address, {})
    route_ids = [_insert_route(engine, address, row) for row, _ in route_cases]
    stream_ids = [_insert_stream(engine, address, row) for row, _ in stream_cases]
    claim_due(engine, CHECK, time.time())  # the dispatcher's read and claim of every row
    seen_before = len(upstream.seen)
    report = run_batch(
        engine, CHECK, [(i, None) for i in [good_route, *route_ids]], [(i, None) for i in [good_stream, *stream_ids]]
    )
    assert not report.write_errors and not report.missing
    checks = _rows(engine, health_checks, "route_id", [good_route, *route_ids])
    stream_checks = _rows(engine, stream_health_checks, "stream_id", [good_stream, *stream_ids])
    assert all(len(rows) == 1 for rows in [*checks.values(), *stream_checks.values()])
    assert checks[good_route][0]["overall_status"] == "healthy", checks[good_route][0]["error"]
    assert stream_checks[good_stream][0]["status"] == "healthy", stream_checks[good_stream][0]["error"]
    probed = 1  # the good route
    for route_id, (row, known) in zip(route_ids, route_cases, strict=True):
        (result,) = checks[route_id]
        error = result["error"] or ""
        assert len(error) < 2000
        if known == "bad":
            assert result["overall_status"] == "unhealthy" and error.startswith("config: "), (row, error)
        elif known == "good":
            assert result["overall_status"] == "healthy", (row, error)
        if not error.startswith("config: ") and row.get("upstream_type", "http") != "tcp":
            probed += 1
    for stream_id, (row, known) in zip(stream_ids, stream_cases, strict=True):
        (result,) = stream_checks[stream_id]
        error = result["error"] or ""
        if known == "bad":
            assert result["status"] == "unhealthy" and error.startswith("config: "), (row, error)
        elif known == "good":
            assert result["status"] == "healthy", (row, error)
    assert len(upstream.seen) - seen_before <= probed  # nothing probed for a config error


def test_hostile_route_and_stream_rows(any_engine, upstream):
    engine, backend = any_engine, any_engine.dialect.name.replace("postgresql", "postgres")

    @BUDGET
    @given(
        route_cases=st.lists(route_rows(backend), min_size=1, max_size=3),
        stream_cases=st.lists(stream_rows(backend), max_size=2),
    )
    def run(route_cases, stream_cases) -> None:
        _check_property(engine, upstream, route_cases, stream_cases)

    run()
