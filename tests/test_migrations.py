"""Migrations: exact ProxyOS schema, additive-only, append-only, transactional, adoption."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from db.engine import create_engine
from db.migrate import MigrationFailed, status, upgrade
from db.schema import metadata
from migrations import manifest
from tests.toolkit.databases import MIGRATIONS_DIR, upgrade_to
from tests.toolkit.processes import run_cli
from tests.toolkit.snapshots import rows, schema


def _kind(type_name: str) -> str:
    """The storage class a declared type stands for, whatever the dialect calls it."""
    name = type_name.upper()
    if "INT" in name:
        return "integer"
    if any(word in name for word in ("REAL", "FLOAT", "DOUBLE")):
        return "real"
    if any(word in name for word in ("TEXT", "CHAR")):
        return "text"
    return name


def _revisions() -> list[str]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    return [rev.revision for rev in script.walk_revisions("base", "heads")][::-1]


def test_fresh_database_matches_the_table_definitions(any_engine):
    """Every table, column, nullability and default of db/schema exists after upgrade."""
    found = schema(any_engine)
    for table in metadata.sorted_tables:
        assert table.name in found, f"table {table.name} was not created"
        columns = found[table.name]["columns"]
        for column in table.columns:
            assert column.name in columns, f"{table.name}.{column.name} missing"
            type_name, nullable = columns[column.name]
            expected = _kind(column.type.compile(any_engine.dialect))
            assert _kind(type_name) == expected, f"{table.name}.{column.name}: {type_name}"
            if not column.primary_key:
                assert nullable == column.nullable, f"{table.name}.{column.name} nullability"
        for index in table.indexes:
            assert index.name in found[table.name]["indexes"], f"index {index.name} missing"


def test_routes_has_every_schema_md_column_and_defaults(engine):
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO routes (id, name, domain, upstream_type, upstreams, created_at, updated_at)"
                " VALUES ('r1', 'n', 'a.example', 'http', '[]', 1, 1)"
            )
        )
        row = conn.execute(sa.text("SELECT * FROM routes")).mappings().one()
    assert len(row) == 74
    assert row["lb_policy"] == "round_robin"
    assert row["health_check_interval"] == 30
    assert row["health_check_path"] == "/"
    assert row["slow_request_threshold_ms"] == 1000
    assert row["upstream_protocol"] == "http"
    assert row["exposure_mode"] == "direct"
    assert row["enabled"] == 1 and row["force_ssl"] == 0


def _insert_sample_rows(engine: sa.Engine, stamp: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO routes (id, name, domain, upstream_type, upstreams, created_at, updated_at)"
                " VALUES (:id, 'n', :domain, 'http', '[{\"address\": \"127.0.0.1:1\"}]', :t, :t)"
            ),
            {"id": f"route{stamp}", "domain": f"r{stamp}.example", "t": stamp},
        )
        conn.execute(
            sa.text(
                "INSERT INTO access_log (id, route_id, method, path, status_code, latency_ms,"
                " bytes_out, recorded_at) VALUES (:id, :r, 'GET', '/', 200, 5, 10, :t)"
            ),
            {"id": f"a{stamp}", "r": f"route{stamp}", "t": stamp},
        )
        conn.execute(
            sa.text(
                "INSERT INTO health_checks (id, route_id, checked_at, overall_status)"
                " VALUES (:id, :r, :t, 'healthy')"
            ),
            {"id": f"h{stamp}", "r": f"route{stamp}", "t": stamp},
        )


def _is_superset(before: dict, after: dict) -> None:
    for table, shape in before.items():
        assert table in after, f"table {table} disappeared"
        for column, spec in shape["columns"].items():
            assert column in after[table]["columns"], f"{table}.{column} disappeared"
            assert after[table]["columns"][column][0] == spec[0], f"{table}.{column} changed type"
        for index, spec in shape["indexes"].items():
            assert after[table]["indexes"].get(index) == spec, f"index {index} disappeared or changed"


def _rows_kept(before: dict, after: dict) -> None:
    for table, old_rows in before.items():
        new_rows = after[table]
        assert len(new_rows) == len(old_rows), f"{table} lost or gained rows"
        for old, new in zip(old_rows, new_rows, strict=True):
            assert set(old) <= set(new), f"a {table} row changed"


def test_migrations_are_additive_revision_by_revision(any_url):
    """Upgrading one revision at a time, nothing disappears, changes type, or changes value."""
    engine = create_engine(any_url)
    revisions = _revisions()
    previous_schema, previous_rows = {}, {}
    for number, revision in enumerate(revisions):
        upgrade_to(engine, revision)
        current_schema, current_rows = schema(engine), rows(engine)
        _is_superset(previous_schema, current_schema)
        _rows_kept(previous_rows, current_rows)
        if "routes" in current_schema:
            _insert_sample_rows(engine, 1000 + number)
        previous_schema, previous_rows = current_schema, rows(engine)
    assert status(engine).pending == []
    engine.dispose()


def test_manifest_lists_every_migration_file_unchanged():
    assert manifest.problems() == []


def test_manifest_detects_a_changed_or_unlisted_migration(tmp_path):
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    baseline = set(manifest.problems(copy))
    first = copy / "versions" / "0001_proxyos_tables.py"
    first.write_text(first.read_text() + "\n# an innocent-looking edit\n")
    (copy / "versions" / "0999_new.py").write_text("revision = '0999'\n")
    found = set(manifest.problems(copy)) - baseline
    assert any("0001_proxyos_tables.py changed" in p for p in found)
    assert any("0999_new.py is not in the manifest" in p for p in found)
    manifest.append_new(copy)
    assert [p for p in manifest.problems(copy) if "0999" in p] == []
    assert any("0001_proxyos_tables.py changed" in p for p in manifest.problems(copy))


def _broken_migrations(tmp_path: Path) -> Path:
    """A copy of the migrations package with one more revision that fails half-way."""
    root = tmp_path / "pkgs"
    shutil.copytree(MIGRATIONS_DIR, root / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    head = _revisions()[-1]
    (root / "migrations" / "versions" / "9999_broken.py").write_text(
        f'''"""A deliberately broken migration (test only)."""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("half_done", sa.Column("id", sa.Text, primary_key=True))
    op.add_column("routes", sa.Column("half_done_flag", sa.Integer))
    op.execute("UPDATE routes SET name = 'changed'")
    op.execute("INSERT INTO no_such_table VALUES (1)")
'''
    )
    return root


def test_a_failing_migration_changes_nothing_and_exits_non_zero(tmp_path, worker_env, sqlite_url):
    engine = create_engine(sqlite_url)
    upgrade(engine)
    _insert_sample_rows(engine, 1)
    before_schema, before_rows = schema(engine), rows(engine)
    engine.dispose()

    env = dict(worker_env, PYTHONPATH=str(_broken_migrations(tmp_path)))
    result = run_cli(["migrate"], env, cwd=tmp_path)
    assert result.returncode != 0
    line = [ln for ln in result.stderr.splitlines() if "migration" in ln]
    assert line, result.stderr
    assert "9999" in line[0] and "no such table: no_such_table" in line[0]
    assert "Traceback" not in result.stderr

    engine = create_engine(sqlite_url)
    assert schema(engine) == before_schema
    assert rows(engine) == before_rows
    assert status(engine).current == _revisions()[-1]
    engine.dispose()


@pytest.mark.postgres
def test_a_failing_migration_rolls_back_on_postgres(tmp_path, postgres_url, monkeypatch):
    engine = create_engine(postgres_url)
    upgrade(engine)
    _insert_sample_rows(engine, 1)
    before_schema, before_rows = schema(engine), rows(engine)
    broken = _broken_migrations(tmp_path) / "migrations"
    with pytest.raises(MigrationFailed) as failure:
        upgrade(engine, script_location=broken)
    assert "migration 9999" in str(failure.value) and "no_such_table" in str(failure.value)
    assert schema(engine) == before_schema
    assert rows(engine) == before_rows
    engine.dispose()


OLD_PROXYOS = Path(__file__).parent / "fixtures" / "proxyos_old.sql"


def test_adopts_a_database_created_by_proxyos(tmp_path, worker_env, sqlite_url):
    """Tables made by ProxyOS, no alembic_version, later columns missing, rows present."""
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    conn = sqlite3.connect(path)
    conn.executescript(OLD_PROXYOS.read_text())
    conn.close()
    engine = create_engine(sqlite_url)
    before_rows = rows(engine)
    before_schema = schema(engine)
    engine.dispose()
    assert "access_list_id" not in before_schema["routes"]["columns"]

    result = run_cli(["migrate"], worker_env)
    assert result.returncode == 0, result.stderr

    engine = create_engine(sqlite_url)
    after_rows, after_schema = rows(engine), schema(engine)
    _is_superset(before_schema, after_schema)
    _rows_kept(before_rows, after_rows)
    for table, old in before_rows.items():
        for old_row, new_row in zip(old, after_rows[table], strict=True):
            assert dict(new_row).items() >= dict(old_row).items()
    with engine.connect() as c:
        route = c.execute(sa.text("SELECT * FROM routes WHERE id='r-old-1'")).mappings().one()
    assert route["access_list_id"] is None
    assert route["exposure_mode"] == "direct"  # a later NOT NULL column, filled by its default
    assert route["upstream_protocol"] == "http"
    assert status(engine).pending == []
    engine.dispose()


def test_concurrent_start_ups_migrate_once(tmp_path, worker_env):
    import subprocess
    import sys

    procs = [
        subprocess.Popen([sys.executable, "-m", "workers.cli", "migrate"], env=worker_env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outcomes
    assert sum("migrations applied" in err for _, err in outcomes) == 1


def test_millisecond_timestamps_fit_on_every_database(any_engine):
    """traffic_metrics.bucket_ts is in ms: beyond 32 bits, so BIGINT on PostgreSQL."""
    with any_engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO traffic_metrics (id, route_id, bucket, bucket_ts) VALUES ('m', 'r', '1m', :ts)"),
            {"ts": 1_764_000_000_000})
        assert conn.execute(sa.text("SELECT bucket_ts FROM traffic_metrics")).scalar() == 1_764_000_000_000


def test_0007_moves_the_rollups_out_of_traffic_metrics_row_for_row(any_url):
    """ProxyOS's readers sum every traffic_metrics row: 1h/1d buckets move to traffic_rollups,
    each row unchanged; the 1m rows (the workers' and ProxyOS's own) stay where they are."""
    engine = create_engine(any_url)
    upgrade_to(engine, "0006")
    columns = ("id", "route_id", "bucket", "bucket_ts", "requests", "bytes", "errors", "status_2xx",
               "status_3xx", "status_4xx", "status_5xx", "latency_sum_ms", "latency_hist")
    sample = [
        ("1m-1764000000000-r1", "r1", "1m", 1_764_000_000_000, 3, 30, 1, 2, 0, 0, 1, 12, '{"9":3}'),
        ("V1StGXR8_Z5jdHi6B-myT", "r1", "1m", 1_764_000_060_000, 1, 5, 0, 1, 0, 0, 0, 4, None),
        ("1h-1764000000000-r1", "r1", "1h", 1_764_000_000_000, 4, 35, 1, 3, 0, 0, 1, 16, '{"9":4}'),
        ("1d-1763942400000-r1", "r1", "1d", 1_763_942_400_000, 4, 35, 1, 3, 0, 0, 1, 16, '{"9":4}'),
        ("1h-1764003600000-r2", "r2", "1h", 1_764_003_600_000, 7, 70, 0, 7, 0, 0, 0, 70, None),
    ]
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO traffic_metrics ({', '.join(columns)}) VALUES "
                             f"({', '.join(':' + c for c in columns)})"),
                     [dict(zip(columns, row, strict=True)) for row in sample])
    before = rows(engine)
    upgrade_to(engine, "0007")
    after = rows(engine)
    select = f"SELECT {', '.join(columns)} FROM {{}} ORDER BY id"
    with engine.connect() as conn:
        minutes = [tuple(r) for r in conn.execute(sa.text(select.format("traffic_metrics")))]
        rollups = [tuple(r) for r in conn.execute(sa.text(select.format("traffic_rollups")))]
    assert minutes == sorted(r for r in sample if r[2] == "1m")
    assert rollups == sorted(r for r in sample if r[2] != "1m")
    for table in before:
        if table != "traffic_metrics":
            assert after[table] == before[table], f"{table} changed"
    engine.dispose()
