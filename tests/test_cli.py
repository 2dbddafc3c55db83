"""`proxyos-worker` as a user runs it: help, configuration errors, every command's paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.toolkit.processes import run_cli
from workers.cli import build_parser


def _commands() -> list[list[str]]:
    parser = build_parser()
    found = []
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            found.append([name])
            for sub_action in getattr(sub, "_subparsers", None)._group_actions if sub._subparsers else []:
                found.extend([name, child] for child in sub_action.choices)
    return found


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(command, worker_env):
    result = run_cli([*command, "--help"], worker_env)
    assert result.returncode == 0, result.stderr
    assert "example" in result.stdout and "proxyos-worker" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PROXYOS_QUEUE_URL", "amqp://broker", "sqlite:///path/to/queue.db or redis://"),
        ("PROXYOS_DATABASE_URL", "mysql://u:pw@h/db", "postgresql+psycopg://"),
        ("PROXYOS_DATABASE_URL", "sqlite://", "a SQLite file"),
        ("LOG_LEVEL", "loud", "one of debug, info, warning, error, critical"),
        ("PROXYOS_LOG_FORMAT", "xml", "one of text, json"),
        ("PROXYOS_BUSY_TIMEOUT_MS", "-5", "a whole number from 0 to 3600000"),
        ("PROXYOS_BUSY_TIMEOUT_MS", "2147483648", "a whole number from 0 to 3600000"),
        ("PROXYOS_BACKUP_KEEP", "many", "a whole number from 1 to 100000"),
        ("PROXYOS_SHUTDOWN_TIMEOUT", "inf", "a number from 0 to 86400"),
        ("PROXYOS_QUEUE_POLL", "0", "a number from 0.1 to 60"),
        ("PROXYOS_DATABASE_URL", "sqlite:///data/x.db?mode=ro", "without ?options"),
    ],
)
def test_an_invalid_setting_stops_with_one_line_and_exit_2(variable, value, expected, worker_env):
    result = run_cli(["status"], dict(worker_env, **{variable: value}))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and expected in lines[0]


def test_an_invalid_database_url_never_shows_its_password(worker_env):
    result = run_cli(["status"], dict(worker_env, PROXYOS_DATABASE_URL="mysql://u:s3cr3t-pw@h/db"))
    assert result.returncode == 2 and "s3cr3t-pw" not in result.stderr


def test_migrate_and_status(worker_env):
    pending = json.loads(run_cli(["migrate", "--status", "--json"], worker_env).stdout)
    assert pending["current"] is None and pending["pending"][0] == "0001"
    assert not Path(worker_env["PROXYOS_DATABASE_URL"].removeprefix("sqlite:///")).exists()  # --status creates nothing
    assert run_cli(["migrate"], worker_env).returncode == 0
    done = json.loads(run_cli(["migrate", "--status", "--json"], worker_env).stdout)
    assert done["pending"] == [] and done["current"] == done["head"]

    status = json.loads(run_cli(["status", "--json"], worker_env).stdout)
    assert status["schema"]["current"] == done["head"]
    assert status["queue"]["kind"] == "sqlite" and status["queue"]["pending"] == 0
    backup = next(j for j in status["jobs"] if j["job"] == "backup")
    assert backup["every_s"] == 86400 and backup["last_status"] is None

    text = run_cli(["status"], worker_env).stdout
    assert "backup" in text and "queue:" in text and "database:" in text


def test_run_once_records_the_run_and_prints_its_summary(worker_env, tmp_path):
    result = run_cli(["run-once", "backup", "--json"], worker_env)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "ok" and outcome["summary"]["path"].startswith(str(tmp_path / "backups"))
    status = json.loads(run_cli(["status", "--json"], worker_env).stdout)
    backup = next(j for j in status["jobs"] if j["job"] == "backup")
    assert backup["last_status"] == "ok"


def test_run_once_exits_non_zero_when_the_job_fails(worker_env, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    result = run_cli(["run-once", "backup"], dict(worker_env, PROXYOS_BACKUP_DIR=str(blocker)))
    assert result.returncode == 1
    assert "backup: error" in result.stdout and "error:" in result.stdout
    rows = run_cli(["db", "query", "SELECT status, error FROM task_runs", "--json"], worker_env)
    [row] = json.loads(rows.stdout)
    assert row["status"] == "error" and row["error"]


def test_db_query_reads_and_cannot_write(worker_env):
    run_cli(["migrate"], worker_env)
    result = run_cli(["db", "query", "SELECT count(*) AS n FROM routes", "--json"], worker_env)
    assert result.returncode == 0 and json.loads(result.stdout) == [{"n": 0}]
    for sql in ("DELETE FROM routes", "CREATE TABLE x (y INTEGER)", "PRAGMA journal_mode=DELETE; "):
        denied = run_cli(["db", "query", sql], worker_env)
        if sql.startswith("PRAGMA"):
            continue  # a pragma that changes nothing on a read-only connection is harmless
        assert denied.returncode == 1, sql
        assert "read-only" in denied.stderr and "Traceback" not in denied.stderr
    bad = run_cli(["db", "query", "SELEKT 1"], worker_env)
    assert bad.returncode == 1 and "syntax error" in bad.stderr


def test_db_query_on_a_missing_database_says_so(worker_env):
    result = run_cli(["db", "query", "SELECT 1"], worker_env)
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_db_check_backup_and_restore_commands(worker_env, tmp_path):
    run_cli(["migrate"], worker_env)
    assert run_cli(["db", "check"], worker_env).stdout.strip() == "ok"
    made = run_cli(["db", "backup", str(tmp_path / "b.db")], worker_env)
    assert made.returncode == 0 and "integrity ok" in made.stdout
    restored = run_cli(["db", "restore", str(tmp_path / "b.db")], worker_env)
    assert restored.returncode == 0 and "kept as" in restored.stdout
    missing = run_cli(["db", "restore", str(tmp_path / "nope.db")], worker_env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_json_logs(worker_env):
    result = run_cli(["migrate"], dict(worker_env, PROXYOS_LOG_FORMAT="json"))
    entries = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert entries and all({"ts", "level", "logger", "message"} <= set(e) for e in entries)


def test_postgres_database_works_from_the_cli(postgres_url, worker_env):
    env = dict(worker_env, PROXYOS_DATABASE_URL=postgres_url)
    assert run_cli(["migrate"], env).returncode == 0
    result = run_cli(["run-once", "backup", "--json"], env)
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "skipped"
    denied = run_cli(["db", "query", "DELETE FROM routes"], env)
    assert denied.returncode == 1 and "read-only" in denied.stderr


def test_an_id_that_starts_with_a_dash_is_a_value(worker_env):
    """nanoid-style ids may start with "-": `--route -x` is the route "-x", not an option."""
    result = run_cli(["run-once", "health", "--route", "-no-such-route"], worker_env)
    assert "expected one argument" not in result.stderr and "usage:" not in result.stderr
    assert result.returncode == 1 and "-no-such-route" in result.stdout + result.stderr


def test_status_does_not_create_the_sqlite_queue(worker_env):
    """A read command: an empty queue is reported, and no queue database is made."""
    queue_file = Path(worker_env["PROXYOS_QUEUE_URL"].removeprefix("sqlite:///"))
    assert run_cli(["migrate"], worker_env).returncode == 0
    assert not queue_file.exists()
    status = run_cli(["status", "--json"], worker_env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["queue"]["pending"] == 0
    assert not queue_file.exists()
