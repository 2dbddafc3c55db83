"""Ingest with the reading side in a second process: the same rows, counts and positions
as reading in the job's own process; a reading process that dies or fails fails the run
with a clear error, and the next run loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from db.migrate import upgrade
from db.schema import access_log, traffic_ingest_position, traffic_metrics
from tasks.traffic import parse_process
from tasks.traffic.batches import Parsing
from tasks.traffic.ingest import ingest
from tasks.traffic.logfile import Position, Segment
from tasks.traffic.parse_process import ParseProcessDied, batches_from_a_process, worth_a_process
from tasks.traffic.reader import Limits, Reading
from tasks.traffic.routing import HostMap
from tests.toolkit.caddy_log import append, caddy_line
from tests.toolkit.factories import add_route
from tests.toolkit.traffic import NOW, recount, stored

HOSTS = ["a.example.com", "b.example.com", "c.example.com"]


def lines(first: int, count: int) -> str:
    """Lines for three routes and a host of none, out of time order now and then, with a
    malformed line every 97th."""
    out = []
    for i in range(first, first + count):
        if i % 97 == 50:
            out.append('{"ts": "not a time", "request": {"host": "a.example.com"}}\n')
            continue
        host = "nobody.example.net" if i % 41 == 7 else HOSTS[i % 3]
        out.append(caddy_line(host, NOW + i - (i % 5) * 3, uri=f"/{i}"))
    return "".join(out)


def fresh_engine(path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    for i, host in enumerate(HOSTS):
        add_route(engine, host, id=f"r{i}")
    return engine


def contents(engine: sa.Engine) -> tuple:
    with engine.connect() as conn:
        rows = sorted(conn.execute(sa.select(access_log.c.route_id, access_log.c.path,
                                             access_log.c.recorded_at, access_log.c.seq)).all())
        positions = conn.execute(sa.select(
            traffic_ingest_position.c.read_offset, traffic_ingest_position.c.lines,
            traffic_ingest_position.c.malformed, traffic_ingest_position.c.unmatched)).all()
    return rows, positions, stored(engine)


def test_reading_in_a_second_process_gives_what_reading_here_gives(tmp_path):
    """Two files (a rotated one, then the current one), the cap with its look-ahead, and a
    run stopped by its byte limit: each run's summary and the database after it are the
    same whichever process reads."""
    log = tmp_path / "logs" / "access.log"
    engines = {where: fresh_engine(tmp_path / f"{where}.db") for where in ("here", "process")}
    options = dict(batch_lines=40, keep_per_route=60, lookahead_lines=150, clock=lambda: NOW)

    def run_both(limits: Limits) -> dict:
        summaries = {
            where: ingest(engine, log, limits=limits, parse_in_process=(where == "process"), **options)
            for where, engine in engines.items()
        }
        assert summaries["here"] == summaries["process"]
        assert contents(engines["here"]) == contents(engines["process"])
        return summaries["process"]

    append(log, lines(0, 700))
    assert "stopped" in run_both(Limits(bytes=100_000))
    log.rename(log.with_name("access.log.1"))
    append(log, lines(700, 500))
    assert "stopped" in run_both(Limits(bytes=100_000))  # the rest of the rotated file first
    summary = run_both(Limits())
    assert "stopped" not in summary and summary["trimmed"] > 0
    with engines["process"].connect() as conn:
        kept = conn.execute(sa.select(access_log.c.route_id, sa.func.count())
                            .group_by(access_log.c.route_id)).all()
        counted = conn.execute(sa.select(sa.func.sum(traffic_metrics.c.requests))).scalar()
    assert sorted(count for _, count in kept) == [60, 60, 60]
    assert counted == len([i for i in range(1200) if i % 97 != 50 and i % 41 != 7])  # every line, once


def the_reading_process() -> int:
    """This process's child reading the log (other children: the session's servers)."""
    me = os.getpid()
    children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    readers = [int(pid) for pid in children
               if b"tasks.traffic.parse_process" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(readers) == 1, children
    return readers[0]


def test_a_reading_process_killed_mid_run_fails_the_run_and_the_next_run_loses_nothing(engine, log_path):
    for i, host in enumerate(HOSTS):
        add_route(engine, host, id=f"r{i}")
    append(log_path, lines(0, 3000))  # far more than the pipe holds: the child is still reading

    def kill_the_reader(event: str, number: int) -> None:
        if event == "committed" and number == 2:
            os.kill(the_reading_process(), signal.SIGKILL)

    with pytest.raises(ParseProcessDied, match=r"ended unexpectedly \(exit code -9\)"):
        ingest(engine, log_path, batch_lines=100, keep_per_route=0, parse_in_process=True,
               on_batch=kill_the_reader, clock=lambda: NOW)
    summary = ingest(engine, log_path, batch_lines=100, keep_per_route=0, parse_in_process=True, clock=lambda: NOW)
    assert summary["inserted"] > 0
    with engine.connect() as conn:
        paths = conn.execute(sa.select(access_log.c.path)).scalars().all()
    expected = {f"/{i}" for i in range(3000) if i % 97 != 50 and i % 41 != 7}
    assert sorted(paths) == sorted(expected)  # each line once
    assert stored(engine) == recount(engine)


def test_an_error_in_the_reading_process_is_raised_here_and_says_where(tmp_path):
    a_directory = tmp_path / "a-directory"
    a_directory.mkdir()
    reading = Reading(Parsing(HostMap({}), 0, float(1 << 40)), batch_lines=10)
    with pytest.raises(IsADirectoryError) as raised:
        list(batches_from_a_process([Segment(a_directory, Position(), complete=True)], reading))
    assert "in the reading process" in "".join(raised.value.__notes__)


def test_a_second_process_is_used_only_for_a_long_stretch_to_read(tmp_path, monkeypatch):
    log = tmp_path / "access.log"
    with log.open("wb") as fh:
        fh.truncate(parse_process.MIN_BYTES)  # sparse: only its size matters here
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    long_stretch = [Segment(log, Position(offset=0), complete=False)]
    assert worth_a_process(long_stretch)
    assert not worth_a_process([Segment(log, Position(offset=1), complete=False)])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert not worth_a_process(long_stretch)  # one core: nothing to gain
