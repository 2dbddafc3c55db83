"""Bad access-log input affects only itself: a line with a value out of range, a time
outside the window, a huge host, an endless line, is one counted malformed line (with its
file and offset in the summary); the read position moves past it, every other line is
counted, and the next run does not read it again. A FIFO is a clear error, not a hang.
A run reads at most its limits and the next one goes on. (SQLite and PostgreSQL.)"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.schema import access_log, traffic_metrics
from tasks.traffic.aggregate import aggregate
from tasks.traffic.caddy import normalize_host
from tasks.traffic.ingest import Limits, ingest, read_position
from tasks.traffic.logfile import MAX_LINE_BYTES, NotARegularFile
from tests.toolkit.caddy_log import append, caddy_line
from tests.toolkit.factories import add_route

HOST = "good-route-7f3a9c.example.test"  # no strategy below produces it by chance


def _now() -> int:
    return int(time.time())


def minutes_total(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(traffic_metrics.c.requests), 0))).scalar())


def good(n: int, at: int | None = None) -> str:
    at = _now() - 60 if at is None else at
    return "".join(caddy_line(HOST, at, uri=f"/ok/{i}") for i in range(n))


def bad_json(**fields) -> str:
    entry = {"ts": _now() - 60, "request": {"host": HOST, "method": "GET", "uri": "/bad"},
             "status": 200, "size": 10, "duration": 0.01}
    entry.update(fields)
    return json.dumps(entry) + "\n"


OUT_OF_RANGE = {
    "status 1e20": bad_json(status=1e20),
    "status -1": bad_json(status=-1),
    "size 1e19": bad_json(size=1e19),
    "size 2**70": bad_json(size=2**70),
    "duration 1e308": bad_json(duration=1e308),
    "ts inf": bad_json(ts="inf"),
    "ts nan": bad_json(ts="nan"),
    "ts 1e300": bad_json(ts=1e300),
    "ts a year ahead": bad_json(ts=_now() + 366 * 86400),
    "ts far ahead, ISO": bad_json(ts="9999-12-31T23:59:59Z"),
    "deep JSON": '{"a":' * 5000 + "1" + "}" * 5000 + "\n",
}


@pytest.mark.parametrize("name", list(OUT_OF_RANGE))
def test_a_value_out_of_range_is_one_malformed_line_and_the_rest_is_counted(any_engine, log_path, name):
    add_route(any_engine, HOST, id="r1")
    append(log_path, good(2) + OUT_OF_RANGE[name] + good(3))
    summary = ingest(any_engine, log_path)
    assert (summary["inserted"], summary["malformed"]) == (5, 1)
    start = len((good(2)).encode())
    assert summary["first_malformed"].startswith(f"{log_path} byte {start}: ")
    assert read_position(any_engine, log_path).offset == log_path.stat().st_size
    assert minutes_total(any_engine) == 5
    # the next runs neither fail on it nor read it again, and counting still works
    append(log_path, good(1))
    assert ingest(any_engine, log_path)["malformed"] == 0
    assert aggregate(any_engine)["rows"] == 0
    assert minutes_total(any_engine) == 6


def test_huge_hosts_are_malformed_and_never_cached_or_echoed(engine, log_path, caplog):
    add_route(engine, HOST, id="r1")
    before = normalize_host.cache_info().currsize
    huge = ["h" * 100_000 + f"{i}.example.test" for i in range(50)]
    append(log_path, "".join(caddy_line(h, _now() - 60) for h in huge) + good(1))
    summary = ingest(engine, log_path)
    assert (summary["inserted"], summary["malformed"], summary["unmatched"]) == (1, 50, 0)
    assert normalize_host.cache_info().currsize - before <= 1  # only the good host
    text = json.dumps(summary) + "".join(r.getMessage() for r in caplog.records)
    assert "h" * 300 not in text and len(summary["first_malformed"]) < 600


def test_an_endless_last_line_is_skipped_once_not_read_again_every_run(engine, log_path):
    add_route(engine, HOST, id="r1")
    append(log_path, good(2) + "x" * (MAX_LINE_BYTES + 10))  # no newline: still being written?
    first = ingest(engine, log_path)
    assert (first["inserted"], first["malformed"]) == (2, 1)
    assert read_position(engine, log_path).offset == log_path.stat().st_size
    append(log_path, "tail of it\n" + good(1))
    second = ingest(engine, log_path)
    assert (second["inserted"], second["malformed"]) == (1, 1)  # the tail is malformed too
    assert minutes_total(engine) == 3


def test_an_overlong_line_in_the_middle_is_skipped_up_to_its_newline(engine, log_path):
    add_route(engine, HOST, id="r1")
    append(log_path, good(1) + "y" * (3 * MAX_LINE_BYTES) + "\n" + good(2))
    summary = ingest(engine, log_path)
    assert (summary["inserted"], summary["malformed"]) == (3, 1)
    assert summary["first_malformed"].startswith(f"{log_path} byte {len(good(1).encode())}: a line longer than")


def test_a_fifo_is_a_clear_error_not_a_hang(engine, tmp_path):
    fifo = tmp_path / "access.log"
    os.mkfifo(fifo)
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(_raises(lambda: ingest(engine, fifo))), daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # unblock the reader the old code would leave hanging
        with open(fifo, "wb"):
            pass
        worker.join(timeout=10)
        pytest.fail("ingest blocked on a FIFO")
    assert isinstance(outcome[0], NotARegularFile)
    assert "not a regular file" in str(outcome[0]) and "PROXYOS_ACCESS_LOG" in str(outcome[0])


def _raises(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test looks at what it was
        return exc
    return None


def test_a_run_reads_at_most_its_limit_and_the_next_run_goes_on(any_engine, log_path):
    add_route(any_engine, HOST, id="r1")
    append(log_path, good(300))
    one_batch = len(good(100).encode())
    first = ingest(any_engine, log_path, batch_lines=100, limits=Limits(bytes=one_batch))
    assert first["inserted"] == 100 and "the next run goes on" in first["stopped"]
    second = ingest(any_engine, log_path, batch_lines=100, limits=Limits(bytes=2 * one_batch))
    assert second["inserted"] == 200 and "stopped" not in ingest(any_engine, log_path)
    assert minutes_total(any_engine) == 300


# --- property: arbitrary and hostile lines among good ones -----------------------------

NUMBER = st.one_of(st.integers(-(2**80), 2**80), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=12), st.none(), st.booleans())
JSON_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), NUMBER, st.text(max_size=20)),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                           max_size=3),
                          max_leaves=10)
RECENT = st.integers(_now() - 3600, _now())
HOSTILE_REQUEST = st.one_of(
    st.fixed_dictionaries({"host": st.one_of(st.just(HOST), st.just(HOST), st.text(max_size=300), NUMBER)},
                          optional={"uri": JSON_VALUE, "method": JSON_VALUE, "headers": JSON_VALUE}),
    JSON_VALUE)
HOSTILE_ENTRY = st.fixed_dictionaries(  # mostly near-valid entries: values out of range get through
    {"ts": st.one_of(RECENT, RECENT, NUMBER), "request": HOSTILE_REQUEST, "status": NUMBER},
    optional={"size": NUMBER, "duration": NUMBER, "extra": JSON_VALUE})
HOSTILE_LINE = st.one_of(
    HOSTILE_ENTRY.map(lambda e: json.dumps(e, allow_nan=True).encode()),
    st.sampled_from(["binary", "text", "deep"]).flatmap(lambda kind: {
        "binary": st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")),
        "text": st.text(max_size=200).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
        "deep": st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    }[kind]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.just(None), HOSTILE_LINE), min_size=1, max_size=30),
       batch=st.integers(1, 8))
def test_no_line_stops_ingest_and_every_good_line_is_counted(any_engine, log_path, lines, batch):
    """None stands for a good line. Each example appends to the same log: whatever the
    hostile lines, the run finishes, reads to the end of the file, and counts every good
    line (and the hostile ones that happen to be valid requests); every other non-blank
    line is malformed or for an unknown host."""
    if not log_path.exists():
        add_route(any_engine, HOST, id="r1")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
    before = minutes_total(any_engine)
    data = b"".join((good(1).encode() if line is None else line + b"\n") for line in lines)
    with log_path.open("ab") as fh:
        fh.write(data)
    summary = ingest(any_engine, log_path, batch_lines=batch)
    goods = sum(line is None for line in lines)
    blank = sum(line is not None and not line.strip() for line in lines)
    assert summary["inserted"] >= goods
    assert summary["inserted"] + summary["malformed"] + summary["unmatched"] == len(lines) - blank
    assert read_position(any_engine, log_path).offset == log_path.stat().st_size
    assert minutes_total(any_engine) - before == summary["inserted"]
    with any_engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(access_log)).scalar()
    assert stored == minutes_total(any_engine)  # no cap reached: every counted row is kept


def test_a_stored_histogram_nested_too_deep_counts_as_empty_and_counting_goes_on(engine, log_path):
    """A `latency_hist` value another writer left (SQLite takes any text) that Python's
    JSON decoder cannot even read must not stop every later count of its bucket."""
    from db.engine import write_transaction
    from db.schema import traffic_rollups
    from tasks.traffic.histogram import decode

    add_route(engine, HOST, id="r1")
    at = _now() - 60
    append(log_path, good(1, at))
    ingest(engine, log_path)
    with write_transaction(engine) as conn:
        conn.execute(sa.update(traffic_rollups).values(latency_hist="[" * 100_000 + "]" * 100_000))
    append(log_path, good(2, at))
    assert ingest(engine, log_path)["counted"] == 2
    assert minutes_total(engine) == 3
    with engine.connect() as conn:
        hists = conn.execute(sa.select(traffic_rollups.c.latency_hist)).scalars().all()
    assert hists and all(sum(decode(h).values()) == 2 for h in hists)  # the bad value counted as empty
