"""The database file: private from its first byte, its mode kept when it exists, never
created by a command that only reads, and named exactly by PROXYOS_DB_PATH or
PROXYOS_DATABASE_URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from db.engine import create_engine, write_transaction
from db.errors import DatabaseProblem
from db.query import run_query
from tests.toolkit.processes import run_cli
from tests.toolkit.snapshots import file_mode
from workers import config
from workers.config import ConfigError


def _write(url: str) -> None:
    engine = create_engine(url)
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    engine.dispose()


def test_a_new_database_and_its_wal_files_are_private(tmp_path, private_umask):
    path = tmp_path / "data" / "proxyos.db"
    engine = create_engine(f"sqlite:///{path}")
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert file_mode(name) == 0o600, name
    engine.dispose()


def test_an_existing_database_keeps_its_mode(tmp_path, private_umask):
    path = tmp_path / "proxyos.db"
    _write(f"sqlite:///{path}")
    os.chmod(path, 0o640)
    _write(f"sqlite:///{path}")
    assert file_mode(path) == 0o640


def test_db_check_warns_when_every_user_may_read_the_database(worker_env, sqlite_url):
    assert run_cli(["migrate"], worker_env).returncode == 0
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    os.chmod(path, 0o644)
    result = run_cli(["db", "check"], worker_env)
    assert result.returncode == 0 and result.stdout.strip() == "ok"
    [line] = result.stderr.strip().splitlines()
    assert "WARNING" in line and f"chmod 600 {path}" in line
    os.chmod(path, 0o600)
    quiet = run_cli(["db", "check"], worker_env)
    assert quiet.returncode == 0 and quiet.stderr.strip() == ""


READ_COMMANDS = [["status"], ["db", "check"], ["db", "query", "SELECT 1"], ["certs"], ["traffic"],
                 ["db", "backup", "somewhere.db"]]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_a_read_command_never_creates_a_database(command, worker_env, tmp_path):
    missing = tmp_path / "mistyped" / "proxyos.db"
    env = dict(worker_env, PROXYOS_DATABASE_URL=f"sqlite:///{missing}")
    result = run_cli(command, env, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{missing} does not exist" in lines[0], result.stderr
    assert not missing.parent.exists()


@pytest.mark.parametrize("name", ["a?b.db", "c#d.db", "e%41f.db", "g h.db", "i%3Fj.db"])
def test_a_database_path_means_the_file_it_names(name, tmp_path):
    settings = config.load({"PROXYOS_DB_PATH": str(tmp_path / name)})
    _write(settings.database_url)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [name]
    assert run_query(settings.database_url, "SELECT x FROM t").rows == [[1]]


def test_relative_and_home_paths_mean_the_file_they_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for env, expected in [
        ({"PROXYOS_DB_PATH": "rel/x.db"}, tmp_path / "rel" / "x.db"),
        ({"PROXYOS_DB_PATH": "~/y.db"}, tmp_path / "home" / "y.db"),
        ({"PROXYOS_DATABASE_URL": "sqlite:///~/z.db"}, tmp_path / "home" / "z.db"),
        ({"PROXYOS_DATABASE_URL": "sqlite:///url/a%3Fb.db"}, tmp_path / "url" / "a?b.db"),
    ]:
        _write(config.load(env).database_url)
        assert expected.is_file(), env
    assert not (tmp_path / "~").exists()


def test_a_sqlite_url_with_options_is_refused():
    with pytest.raises(ConfigError) as refused:
        config.load({"PROXYOS_DATABASE_URL": "sqlite:///data/x.db?mode=ro&uri=true"})
    assert refused.value.variable == "PROXYOS_DATABASE_URL" and "%3F" in str(refused.value)


def test_a_database_error_never_shows_the_password(worker_env):
    url = "postgresql+psycopg://postgres:s3cr3t-pw@127.0.0.1:1/test"
    with pytest.raises(DatabaseProblem) as failed:
        run_query(url, "SELECT 1")
    assert "s3cr3t-pw" not in str(failed.value) and "\n" not in str(failed.value)
    result = run_cli(["db", "query", "SELECT 1"], dict(worker_env, PROXYOS_DATABASE_URL=url))
    assert result.returncode == 1 and "s3cr3t-pw" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
