"""Ingest: rotation, copy-truncate, partial lines, malformed lines, crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import access_log
from tasks.outcome import Skipped
from tasks.traffic.caddy import MalformedLine, normalize_host, parse_line
from tasks.traffic.ingest import Ingester, PositionMoved, ingest, read_position
from tasks.traffic.logfile import plan
from tasks.traffic.routing import HostMap
from tests.toolkit.caddy_log import append, caddy_line
from tests.toolkit.factories import add_route
from tests.toolkit.traffic import NOW, count_rows, recount, stored

ROOT = Path(__file__).resolve().parents[2]


def uris(engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(access_log.c.path)).scalars())


def numbered(host: str, first: int, count: int) -> str:
    return "".join(caddy_line(host, NOW + i, uri=f"/n/{i:06d}") for i in range(first, first + count))


def expected(first: int, count: int) -> list[str]:
    return [f"/n/{i:06d}" for i in range(first, first + count)]


def test_lines_become_rows_with_their_route_and_fields(any_engine, log_path):
    add_route(any_engine, "app.example.com", id="r1", aliases=["www.example.com", "*.apps.example.com"])
    append(log_path, caddy_line("App.Example.COM:8443", NOW + 0.75, status=503, duration=0.2505,
                                size=512, uri="/a?b=1", method="POST"))
    append(log_path, caddy_line("www.example.com.", NOW + 1))
    append(log_path, caddy_line("x.apps.example.com", NOW + 2))
    summary = ingest(any_engine, log_path)
    assert summary["inserted"] == 3 and summary["unmatched"] == 0
    with any_engine.connect() as conn:
        rows = conn.execute(sa.select(access_log).order_by(access_log.c.seq)).mappings().all()
    first = rows[0]
    assert first["route_id"] == "r1" and first["method"] == "POST" and first["path"] == "/a?b=1"
    assert first["status_code"] == 503 and first["latency_ms"] == 250 and first["bytes_out"] == 512
    assert first["client_ip"] == "203.0.113.7" and first["user_agent"] == "curl/8.5.0"
    assert first["recorded_at"] == NOW and len(first["id"]) == 21
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert {r["route_id"] for r in rows} == {"r1"}


def test_host_normalization():
    assert normalize_host("Example.COM:443") == "example.com"
    assert normalize_host("[2001:db8::1]:8443") == "2001:db8::1"
    assert normalize_host("2001:db8::1") == "2001:db8::1"
    assert normalize_host("example.com.") == "example.com"


@pytest.mark.parametrize("line,why", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"ts": 1, "status": 200}', "no request object"),
    (b'{"ts": 1, "request": {"host": ""}}', "no request.host"),
    (b'{"request": {"host": "a"}}', "no ts"),
    (b'{"ts": "yesterday", "request": {"host": "a"}}', "ts is not a time"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_malformed_lines_say_why(line, why):
    with pytest.raises(MalformedLine, match=why):
        parse_line(line)


def test_iso_timestamps_are_accepted():
    assert parse_line(b'{"ts": "2025-11-24T16:00:00Z", "request": {"host": "a"}}').recorded_at == NOW


def test_malformed_and_unmatched_lines_are_counted_and_the_rest_goes_on(engine, log_path, caplog):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 2) + "garbage line\n" + '{"ts": 1}\n'
           + caddy_line("unknown.example.net", NOW) + "\n" + numbered("app.example.com", 2, 2))
    summary = ingest(engine, log_path)
    assert summary["inserted"] == 4
    assert summary["malformed"] == 2
    assert summary["unmatched"] == 1
    assert summary["unmatched_hosts"] == {"unknown.example.net": 1}
    assert uris(engine) == expected(0, 4)
    samples = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(samples) == 1 and "garbage line" in samples[0]
    with engine.connect() as conn:
        from db.schema import traffic_ingest_position as pos
        row = conn.execute(sa.select(pos)).mappings().one()
    assert (row["lines"], row["malformed"], row["unmatched"]) == (7, 2, 1)


def test_a_half_written_line_waits_for_its_end(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    whole = caddy_line("app.example.com", NOW, uri="/n/000001")
    append(log_path, numbered("app.example.com", 0, 1) + whole[:40])
    assert ingest(engine, log_path)["inserted"] == 1
    assert ingest(engine, log_path)["inserted"] == 0  # still half
    append(log_path, whole[40:])
    assert ingest(engine, log_path)["inserted"] == 1
    assert uris(engine) == expected(0, 2)


def test_rotation_by_rename_finishes_the_old_file_first(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 5))
    ingest(engine, log_path)
    append(log_path, numbered("app.example.com", 5, 3))  # written before the rotation
    log_path.rename(log_path.with_name("access-2025-11-24T16-00-00.000.log"))
    append(log_path, numbered("app.example.com", 8, 4))  # the new file
    summary = ingest(engine, log_path)
    assert summary["inserted"] == 7 and len(summary["files"]) == 2
    assert uris(engine) == expected(0, 12)
    assert ingest(engine, log_path)["inserted"] == 0
    append(log_path, numbered("app.example.com", 12, 1))
    assert ingest(engine, log_path)["inserted"] == 1
    assert uris(engine) == expected(0, 13)


def test_a_rotated_file_with_an_unterminated_last_line_gives_that_line(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 2).rstrip("\n"))
    assert ingest(engine, log_path)["inserted"] == 1
    log_path.rename(log_path.with_name("access.log.1"))
    append(log_path, numbered("app.example.com", 2, 1))
    assert ingest(engine, log_path)["inserted"] == 2
    assert uris(engine) == expected(0, 3)


def test_copy_truncate_reads_the_rest_of_the_copy_then_the_file_from_its_start(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 5))
    ingest(engine, log_path)
    append(log_path, numbered("app.example.com", 5, 2))
    copy = log_path.with_name("access.log.1")
    copy.write_bytes(log_path.read_bytes())  # logrotate's copytruncate
    with log_path.open("r+b") as fh:
        fh.truncate(0)
    append(log_path, numbered("app.example.com", 7, 3))
    summary = ingest(engine, log_path)
    assert summary["inserted"] == 5 and "lost" not in summary
    assert uris(engine) == expected(0, 10)


def test_copy_truncate_that_grew_past_the_old_offset_is_still_noticed(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 2))
    ingest(engine, log_path)
    log_path.with_name("access.log.1").write_bytes(log_path.read_bytes())
    with log_path.open("r+b") as fh:
        fh.truncate(0)
    append(log_path, numbered("app.example.com", 2, 6))  # longer than before
    assert ingest(engine, log_path)["inserted"] == 6
    assert uris(engine) == expected(0, 8)


def test_a_vanished_rotated_file_is_reported(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 2))
    ingest(engine, log_path)
    log_path.unlink()
    append(log_path, numbered("app.example.com", 2, 1))
    summary = ingest(engine, log_path)
    # the new file may even reuse the old inode: its first bytes tell them apart
    assert summary["lost"] and summary["inserted"] == 1
    assert uris(engine) == expected(0, 3)


def test_no_log_file_is_a_skip_with_a_clear_reason(engine, tmp_path):
    with pytest.raises(Skipped, match="no access log at"):
        ingest(engine, tmp_path / "missing.log")


def test_a_second_run_that_read_the_same_lines_cannot_commit_them(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 10))
    ingest(engine, log_path, batch_lines=4)  # creates the position row
    append(log_path, numbered("app.example.com", 10, 10))
    # Two runs plan from the same committed position; the first one commits.
    committed = read_position(engine, log_path)
    hosts = HostMap({"app.example.com": "r1"})
    first = Ingester(engine, log_path, hosts, 4, lambda: NOW, None)
    second = Ingester(engine, log_path, hosts, 4, lambda: NOW, None)
    todo = plan(log_path, committed)
    first.run(committed, todo)
    with pytest.raises(PositionMoved):
        second.run(committed, todo)
    assert uris(engine) == expected(0, 20)


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    from db.engine import create_engine
    from tasks.traffic.ingest import ingest
    url, path, event, number, in_process = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    def crash(ev, n):
        if ev == event and n == number:
            os._exit(9)
    ingest(create_engine(url), path, batch_lines=7, on_batch=crash, parse_in_process=in_process == "yes")
    sys.exit(0)
""")


@pytest.mark.parametrize("in_process", ["no", "yes"])  # the lines read here, or in a second process
@pytest.mark.parametrize("event", ["before_commit", "committed"])
def test_a_crash_between_batches_loses_and_duplicates_nothing(engine, sqlite_url, log_path, event, in_process):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 30) + "junk\n" + numbered("app.example.com", 30, 20))
    done = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, sqlite_url, str(log_path), event, "3", in_process],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )
    assert done.returncode == 9, done.stderr
    rows_after_crash = count_rows(engine, access_log)
    assert rows_after_crash == (14 if event == "before_commit" else 21)
    assert stored(engine) == recount(engine)  # the counts committed with the rows, or not at all
    ingest(engine, log_path, batch_lines=7)
    assert uris(engine) == expected(0, 50)
    assert stored(engine) == recount(engine)
    with engine.connect() as conn:
        seqs = sorted(conn.execute(sa.select(access_log.c.seq)).scalars())
    assert seqs == list(range(1, 51))


def proxyos_stored(engine, ts: int, count: int = 3) -> None:
    """Rows ProxyOS wrote itself before the workers took over: no seq, the newest at ts."""
    with write_transaction(engine) as conn:
        conn.execute(access_log.insert(), [
            {"id": f"proxyos{ts}-{i}", "route_id": "r1", "recorded_at": ts - i} for i in range(count)
        ])


def ingested(engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(access_log.c.path).where(access_log.c.seq.is_not(None))).scalars())


def test_on_a_database_proxyos_filled_the_lines_it_stored_are_not_stored_again(any_engine, log_path):
    add_route(any_engine, "app.example.com", id="r1")
    proxyos_stored(any_engine, NOW + 9)  # ProxyOS stored requests up to NOW + 9
    append(log_path, numbered("app.example.com", 0, 20))  # requests at NOW .. NOW + 19
    summary = ingest(any_engine, log_path)
    assert summary["already_stored"] == 10 and summary["inserted"] == 10
    assert ingested(any_engine) == expected(10, 10)
    # the boundary is measured once: rows ProxyOS writes later do not move it
    proxyos_stored(any_engine, NOW + 100, count=1)
    append(log_path, numbered("app.example.com", 20, 5))
    assert ingest(any_engine, log_path)["inserted"] == 5
    assert ingested(any_engine) == expected(10, 15)


def test_a_first_ingest_stopped_midway_still_skips_what_proxyos_stored(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    proxyos_stored(engine, NOW + 29)
    append(log_path, numbered("app.example.com", 0, 40))

    def stop_after_first(event, number):
        if event == "committed" and number == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        ingest(engine, log_path, batch_lines=8, on_batch=stop_after_first)
    ingest(engine, log_path, batch_lines=8)
    assert ingested(engine) == expected(30, 10)


def test_without_rows_from_proxyos_every_line_is_stored(engine, log_path):
    add_route(engine, "app.example.com", id="r1")
    append(log_path, numbered("app.example.com", 0, 10))
    summary = ingest(engine, log_path)
    assert "already_stored" not in summary
    assert uris(engine) == expected(0, 10)
