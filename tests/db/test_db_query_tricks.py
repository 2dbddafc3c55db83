"""`db query` is read-only whatever the text: every trick below is refused with one line,
and neither the data nor the file system changes. Run on SQLite and PostgreSQL (as the
superuser, the hard case)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from db.errors import DatabaseProblem
from db.query import run_query
from tests.toolkit.processes import run_cli
from tests.toolkit.snapshots import fingerprint

NEW_ROUTE = "INSERT INTO routes (id, name, domain, upstream_type, upstreams, created_at, updated_at)" \
    " VALUES ('x', 'x', 'x.example', 'http', '[]', 1, 1)"

TRICKS = [
    # several statements, and ways back to read-write
    "SELECT 1; DELETE FROM routes",
    "SET TRANSACTION READ WRITE; DELETE FROM routes; COMMIT",
    "COMMIT; DELETE FROM routes",
    "ROLLBACK; BEGIN; DELETE FROM routes; COMMIT",
    "END; DELETE FROM routes",
    "BEGIN IMMEDIATE",
    "SET TRANSACTION READ WRITE",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SET ROLE postgres",
    "SELECT set_config('transaction_read_only', 'off', false)",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT set_config('role', 'postgres', true), current_user",
    "SELECT set_config('role', 'postgres', true),"
    " query_to_xml('SELECT pg_read_file(''/etc/hostname'')', true, false, '')",
    "SELECT query_to_xml('DELETE FROM routes RETURNING id', true, false, '')",
    "SELECT ts_stat('SELECT to_tsvector(pg_read_file(''/etc/hostname''))')",
    # plain writes, and writes inside a read
    "DELETE FROM routes",
    "DELETE FROM routes RETURNING *",
    "UPDATE routes SET name = 'taken'",
    NEW_ROUTE,
    "REPLACE INTO routes (id, name, domain, upstream_type, upstreams, created_at, updated_at)"
    " VALUES ('r1', 'x', 'x', 'http', '[]', 1, 1)",
    "WITH gone AS (DELETE FROM routes RETURNING id) SELECT * FROM gone",
    f"WITH added AS ({NEW_ROUTE} RETURNING id) SELECT * FROM added",
    "WITH changed AS (UPDATE routes SET name = 'taken' RETURNING id) SELECT count(*) FROM changed",
    "SELECT * INTO stolen FROM routes",
    "CREATE TABLE stolen AS SELECT * FROM routes",
    "CREATE TEMP TABLE stolen AS SELECT * FROM routes",
    "SELECT * FROM routes FOR UPDATE",
    "SELECT * FROM routes FOR SHARE NOWAIT",
    "DROP TABLE routes",
    "TRUNCATE routes",
    "ALTER TABLE routes ADD COLUMN taken TEXT",
    "EXPLAIN ANALYZE DELETE FROM routes",
    "EXPLAIN ANALYZE CREATE TABLE stolen AS SELECT 1",
    "PREPARE p AS DELETE FROM routes",
    "DO $$ BEGIN DELETE FROM routes; END $$",
    "LOCK TABLE routes IN ACCESS EXCLUSIVE MODE",
    "SELECT nextval('trick_seq')",
    "SELECT setval('trick_seq', 99)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_notify('proxyos', 'x')",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT pg_logical_emit_message(false, 'proxyos', 'x')",
    "SELECT pg_stat_reset()",
    "SELECT dblink_exec('dbname=test', 'DELETE FROM routes')",
    "VACUUM",
    "ANALYZE",
    "REINDEX",
    "CHECKPOINT",
    "SAVEPOINT s",
    # server files
    "COPY (SELECT * FROM routes) TO '{file}'",
    "COPY routes TO '{file}'",
    "COPY (SELECT 1) TO PROGRAM 'touch {file}'",
    "COPY routes FROM PROGRAM 'touch {file}'",
    "SELECT lo_export(lo_from_bytea(0, 'x'), '{file}')",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_read_binary_file('/etc/hostname')",
    "SELECT ('/etc/hostname'::text).pg_read_file",
    "SELECT * FROM pg_ls_dir('.')",
    "SELECT pg_stat_file('/etc/hostname')",
    # SQLite's own
    "ATTACH DATABASE '{file}' AS other",
    "PRAGMA writable_schema = ON",
    "PRAGMA query_only = OFF",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "VACUUM INTO '{file}'",
    "SELECT load_extension('{file}')",
    "SELECT writefile('{file}', 'x')",
    "SELECT fts3_tokenizer('simple')",
    "DETACH DATABASE main",
    # comments, whitespace, quoting and look-alike characters
    "/* SELECT */ DELETE FROM routes",
    "SELECT 1 -- ;\n; DELETE FROM routes",
    "SELECT 1 /* ; */ ; DELETE FROM routes",
    "\n\t  DELETE\fFROM routes",
    " ; DELETE FROM routes",
    "SELECT 1;\u200bDELETE FROM routes",
    "SELECT 1\u037e DELETE FROM routes",
    "SELECT $$;$$; DELETE FROM routes",
    "SELECT 'x'; DELETE FROM routes -- '",
    "DEL\u00adETE FROM routes",
    "\uff24\uff25\uff2c\uff25\uff34\uff25 FROM routes",
]

# One string literal on PostgreSQL (E'' escapes the quote), several statements on SQLite:
# either way nothing may change.
LOOK_ALIKES = ["SELECT E'\\'; DELETE FROM routes; --'"]

ORDINARY = [
    ("SELECT count(*) AS n FROM routes", [{"n": 2}]),
    ("  select id FROM routes ORDER BY id ;  ", [{"id": "r1"}, {"id": "r2"}]),
    ("WITH r AS (SELECT id FROM routes) SELECT max(id) AS top FROM r -- a comment", [{"top": "r2"}]),
    ("SELECT 'a;b' AS s, 5 % 2 AS m, 'h\u00e9llo \u2713' AS u", [{"s": "a;b", "m": 1, "u": "h\u00e9llo \u2713"}]),
    ("SELECT domain FROM routes WHERE id IN (SELECT id FROM routes WHERE id LIKE '%1')", [{"domain": "a.example"}]),
]


@pytest.fixture
def trick_file() -> Iterator[Path]:
    """A path anyone (also the PostgreSQL server's user) could create, for tricks that try."""
    path = Path(f"/tmp/proxyos-trick-{uuid.uuid4().hex}")
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def watched(shared_filled_url) -> Iterator[tuple[str, sa.Engine]]:
    engine = create_engine(shared_filled_url)
    yield shared_filled_url, engine
    engine.dispose()


def _refused(url: str, sql: str) -> str:
    with pytest.raises(DatabaseProblem) as refused:
        run_query(url, sql, timeout_s=10)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("db query"), message
    return message


@pytest.mark.parametrize("trick", TRICKS, ids=range(len(TRICKS)))
def test_a_trick_is_refused_and_changes_nothing(trick, watched, trick_file):
    url, engine = watched
    before = fingerprint(engine)
    _refused(url, trick.replace("{file}", str(trick_file)))
    assert fingerprint(engine) == before
    assert not trick_file.exists()


@pytest.mark.parametrize("sql", LOOK_ALIKES)
def test_a_look_alike_is_refused_or_only_read(sql, watched):
    url, engine = watched
    before = fingerprint(engine)
    try:
        run_query(url, sql)
    except DatabaseProblem as exc:
        assert "\n" not in str(exc) and str(exc).startswith("db query")
    assert fingerprint(engine) == before


def test_ordinary_reads_still_work(watched):
    url, _ = watched
    for sql, expected in ORDINARY:
        result = run_query(url, sql)
        assert [dict(zip(result.columns, row, strict=True)) for row in result.rows] == expected, sql
    assert run_query(url, "EXPLAIN SELECT * FROM routes").rows
    if url.startswith("postgresql"):
        assert run_query(url, "SHOW transaction_read_only").rows == [["on"]]
        assert run_query(url, "SELECT current_user AS who").rows == [["pg_read_all_data"]]  # a superuser here


def test_a_query_that_runs_too_long_is_stopped(watched):
    url, _ = watched
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    assert "stopped after 0.5 s" in _refused_or_failed(url, endless, 0.5)


def _refused_or_failed(url: str, sql: str, timeout_s: float) -> str:
    with pytest.raises(DatabaseProblem) as failed:
        run_query(url, sql, timeout_s=timeout_s)
    return str(failed.value)


CLI_TRICKS = ["SET TRANSACTION READ WRITE; DELETE FROM routes; COMMIT", "COPY routes TO '{file}'",
              "VACUUM INTO '{file}'"]


def test_the_command_refuses_with_one_line_and_reads(db_env, filled_url, trick_file):
    engine = create_engine(filled_url)
    before = fingerprint(engine)
    for trick in CLI_TRICKS:
        result = run_cli(["db", "query", trick.replace("{file}", str(trick_file))], db_env)
        assert result.returncode == 1, (trick, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "db query" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert fingerprint(engine) == before and not trick_file.exists()
    engine.dispose()
    read = run_cli(["db", "query", "--timeout", "5", "SELECT count(*) AS n FROM routes", "--json"], db_env)
    assert read.returncode == 0 and json.loads(read.stdout) == [{"n": 2}], read.stderr
    bad = run_cli(["db", "query", "--timeout", "inf", "SELECT 1"], db_env)
    assert bad.returncode == 2 and "--timeout" in bad.stderr
