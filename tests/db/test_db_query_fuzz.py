"""Property: whatever text `db query` is given, it returns rows or refuses with one line,
and the database never changes (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.engine import create_engine
from db.errors import DatabaseProblem
from db.query import run_query
from tests.toolkit.snapshots import fingerprint

FRAGMENTS = [
    "SELECT", "*", "1", "FROM routes", "WHERE id = 'r1'", ";", "DELETE FROM routes", "UPDATE routes SET name = 'x'",
    "INSERT INTO routes (id) VALUES ('x')", "DROP TABLE routes", "COMMIT", "BEGIN", "ROLLBACK", "END",
    "SET TRANSACTION READ WRITE", "SET ROLE postgres", "set_config('transaction_read_only', 'off', false)",
    "set_config('role', 'postgres', true)", "WITH x AS (", ")", "(", "RETURNING *", "INTO stolen",
    "FOR UPDATE", "nextval('trick_seq')", "pg_read_file('/etc/hostname')", "lo_export(1, '/tmp/x')",
    "COPY routes TO '/tmp/proxyos-fuzz'", "ATTACH '/tmp/proxyos-fuzz' AS a", "PRAGMA writable_schema = 1",
    "VACUUM INTO '/tmp/proxyos-fuzz'", "EXPLAIN ANALYZE", "--", "/*", "*/", "'", "\"", "$$", "E'\\'", "\n",
    "\u037e", "\u200b", "\x00", ",", "query_to_xml('DELETE FROM routes', true, false, '')", "TRUNCATE routes",
]

texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=10).map(" ".join)


@pytest.fixture(scope="module")
def target(shared_filled_url) -> Iterator[tuple[str, sa.Engine, tuple]]:
    engine = create_engine(shared_filled_url)
    yield shared_filled_url, engine, fingerprint(engine)
    engine.dispose()


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=texts)
def test_any_text_reads_or_refuses_and_changes_nothing(target, sql):
    url, engine, before = target
    try:
        run_query(url, sql, timeout_s=5)
    except DatabaseProblem as exc:
        assert "\n" not in str(exc) and str(exc).startswith("db query"), str(exc)
    assert fingerprint(engine) == before
    assert not Path("/tmp/proxyos-fuzz").exists()
