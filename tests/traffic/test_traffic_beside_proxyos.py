"""What the dashboard reads stays right: minutes fresh after every ingest run, only `1m`
rows in `traffic_metrics`, ProxyOS's 1,000-row ring per route, never a row deleted
before it is counted (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import random

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.engine import write_transaction
from db.schema import access_log, traffic_metrics, traffic_rollups
from tasks.traffic import ring
from tasks.traffic.aggregate import aggregate, pending
from tasks.traffic.ingest import ingest
from tests.toolkit.caddy_log import append, caddy_line, random_lines
from tests.toolkit.factories import add_route
from tests.toolkit.traffic import NOW, recount, stored, uncount

HOSTS = ["a.example.com", "b.example.com", "c.example.com"]


def per_route(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(
            sa.select(access_log.c.route_id, sa.func.count()).group_by(access_log.c.route_id)).all())


def minutes_total(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.coalesce(sa.func.sum(traffic_metrics.c.requests), 0))).scalar()


def test_every_line_is_in_the_minutes_after_each_ingest_run(any_engine, log_path):
    for i, host in enumerate(HOSTS):
        add_route(any_engine, host, id=f"r{i}")
    rng = random.Random(5)
    sent = 0
    for run in range(4):
        count = rng.randint(1, 400)
        append(log_path, "".join(random_lines(rng, HOSTS, count, NOW + run * 50, 50)))
        sent += count
        summary = ingest(any_engine, log_path, batch_lines=97, keep_per_route=0)
        assert summary["counted"] == count
        assert minutes_total(any_engine) == sent  # no aggregate run in between
        assert stored(any_engine) == recount(any_engine)
    with any_engine.connect() as conn:
        assert set(conn.execute(sa.select(traffic_metrics.c.bucket)).scalars()) == {"1m"}
        assert set(conn.execute(sa.select(traffic_rollups.c.bucket)).scalars()) == {"1h", "1d"}


def test_a_backlog_is_counted_by_the_next_ingest_run(any_engine, log_path):
    add_route(any_engine, HOSTS[0], id="r0")
    append(log_path, "".join(random_lines(random.Random(1), HOSTS[:1], 300, NOW - 600, 600)))
    ingest(any_engine, log_path, keep_per_route=0)
    uncount(any_engine)  # as after an upgrade from workers that did not count on ingest
    append(log_path, caddy_line(HOSTS[0], NOW + 1))
    assert ingest(any_engine, log_path, keep_per_route=0)["counted"] == 301
    assert pending(any_engine)[0] == 301 and stored(any_engine) == recount(any_engine)


def test_an_aggregate_run_racing_an_ingest_run_counts_each_row_once(any_engine, log_path):
    add_route(any_engine, HOSTS[0], id="r0")
    append(log_path, "".join(random_lines(random.Random(2), HOSTS[:1], 500, NOW - 900, 900)))
    ingest(any_engine, log_path, keep_per_route=0)
    uncount(any_engine)
    append(log_path, caddy_line(HOSTS[0], NOW))
    raced = []

    def ingest_meanwhile(event: str, number: int) -> None:
        if event == "grouped" and number == 1:  # grouped, not yet added: ingest counts it all
            raced.append(ingest(any_engine, log_path, keep_per_route=0))

    summary = aggregate(any_engine, batch_rows=200, on_batch=ingest_meanwhile)
    assert raced[0]["counted"] == 501 and summary["rows"] == 0
    assert stored(any_engine) == recount(any_engine)


def test_after_each_ingest_run_no_route_holds_more_than_the_cap(any_engine, log_path):
    for i, host in enumerate(HOSTS):
        add_route(any_engine, host, id=f"r{i}")
    rng = random.Random(9)
    for run in range(3):
        lines = random_lines(rng, HOSTS, 160, NOW + run * 10, 10)  # many rows share a second
        append(log_path, "".join(lines))
        ingest(any_engine, log_path, batch_lines=50, keep_per_route=40)
        assert all(n <= 40 for n in per_route(any_engine).values()), per_route(any_engine)
    with any_engine.connect() as conn:
        for route in ("r0", "r1", "r2"):
            kept = conn.execute(sa.select(access_log.c.recorded_at).where(access_log.c.route_id == route)
                                .order_by(access_log.c.recorded_at)).scalars().all()
            assert len(kept) == 40
            newest = conn.execute(sa.select(sa.func.max(access_log.c.recorded_at))
                                  .where(access_log.c.route_id == route)).scalar()
            assert kept[-1] == newest
    # the minutes still count every line ever read
    assert minutes_total(any_engine) == 3 * 160


def test_the_cap_keeps_exactly_the_newest_rows_proxyos_rows_included(any_engine, log_path):
    add_route(any_engine, HOSTS[0], id="r0")
    with write_transaction(any_engine) as conn:  # ProxyOS's own rows: older, no seq
        conn.execute(access_log.insert(), [
            {"id": f"proxyos-{i}", "route_id": "r0", "recorded_at": NOW - 1000 + i} for i in range(30)])
    append(log_path, "".join(caddy_line(HOSTS[0], NOW + i // 4, uri=f"/{i}") for i in range(20)))
    ingest(any_engine, log_path, keep_per_route=25)
    with any_engine.connect() as conn:
        kept = conn.execute(sa.select(access_log.c.id, access_log.c.path)).all()
    assert len(kept) == 25
    assert sorted(p for _, p in kept if p) == sorted(f"/{i}" for i in range(20))
    assert sorted(i for i, p in kept if not p) == sorted(f"proxyos-{i}" for i in range(25, 30))


class Stop(Exception):
    pass


def stop_after_first(event: str, number: int) -> None:
    if event == "committed" and number == 1:
        raise Stop


def test_a_row_not_yet_counted_is_never_trimmed(any_engine, log_path):
    add_route(any_engine, HOSTS[0], id="r0")
    append(log_path, "".join(caddy_line(HOSTS[0], NOW + i) for i in range(50)))
    ingest(any_engine, log_path, keep_per_route=0)
    uncount(any_engine)  # every row waits for the aggregate
    assert ring.trim(any_engine, ["r0"], 10) == 0 and per_route(any_engine) == {"r0": 50}
    with pytest.raises(Stop):  # counts the oldest 30, then stops
        aggregate(any_engine, batch_rows=30, on_batch=stop_after_first)
    assert ring.trim(any_engine, ["r0"], 10) == 30
    assert per_route(any_engine) == {"r0": 20}
    aggregate(any_engine)
    assert ring.trim(any_engine, ["r0"], 10) == 10


@pytest.mark.parametrize("keep", [0, 1])
def test_the_cap_can_be_turned_off_or_down_to_one(engine, log_path, keep):
    add_route(engine, HOSTS[0], id="r0")
    append(log_path, "".join(caddy_line(HOSTS[0], NOW) for _ in range(7)))
    ingest(engine, log_path, keep_per_route=keep)
    assert per_route(engine) == {"r0": keep or 7}


LINE = st.tuples(st.sampled_from(HOSTS), st.integers(0, 40))  # few distinct seconds: many ties


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(st.lists(LINE, min_size=1, max_size=60), min_size=1, max_size=4),
       keep=st.integers(1, 12), batch=st.integers(1, 25), lookahead=st.integers(0, 80),
       stop_at=st.none() | st.integers(1, 6))
def test_the_ring_keeps_exactly_the_newest_rows_and_the_minutes_count_every_line(
        tmp_path_factory, runs, keep, batch, lookahead, stop_at):
    """Whatever the lines (ties, late ones), batch size, look-ahead and cap, and whether a
    run stops after some batch (then runs again): after each complete run every route
    holds exactly its newest min(lines, cap) rows, by time then order, and the minutes
    count every line ever read."""
    from db.engine import create_engine
    from db.migrate import upgrade

    work = tmp_path_factory.mktemp("ring")
    engine = create_engine(f"sqlite:///{work / 'proxyos.db'}")
    upgrade(engine)
    log = work / "access.log"
    for i, host in enumerate(HOSTS):
        add_route(engine, host, id=f"r{i}")
    sent: list[tuple[str, int, int]] = []  # (route, recorded_at, order)
    for lines in runs:
        append(log, "".join(caddy_line(host, NOW + second, uri=f"/{len(sent) + j}")
                            for j, (host, second) in enumerate(lines)))
        sent += [(f"r{HOSTS.index(host)}", NOW + second, len(sent) + j) for j, (host, second) in enumerate(lines)]
        if stop_at is not None:
            def stop(event: str, number: int) -> None:
                if event == "committed" and number == stop_at:
                    raise Stop
            with contextlib.suppress(Stop):
                ingest(engine, log, batch_lines=batch, keep_per_route=keep, lookahead_lines=lookahead,
                       on_batch=stop)
        ingest(engine, log, batch_lines=batch, keep_per_route=keep, lookahead_lines=lookahead)
        with engine.connect() as conn:
            kept = {(route, path) for route, path in conn.execute(sa.select(access_log.c.route_id, access_log.c.path))}
        expected = set()
        for route in ("r0", "r1", "r2"):
            mine = sorted((ts, order) for r, ts, order in sent if r == route)
            expected |= {(route, f"/{order}") for _, order in mine[-keep:]}
        assert kept == expected
        assert minutes_total(engine) == len(sent)
    engine.dispose()
