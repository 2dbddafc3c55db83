"""The jobs and the `traffic` command as a user runs them: real processes, real files."""

from __future__ import annotations

import json
import time

import pytest

from db.engine import create_engine
from db.migrate import upgrade
from tests.toolkit.caddy_log import append, caddy_line
from tests.toolkit.factories import add_route
from tests.toolkit.processes import run_cli


@pytest.fixture
def env(worker_env, sqlite_url, log_path):
    engine = create_engine(sqlite_url)
    upgrade(engine)
    add_route(engine, "app.example.com", id="r-app")
    add_route(engine, "api.example.com", id="r-api")
    engine.dispose()
    return {**worker_env, "PROXYOS_ACCESS_LOG": str(log_path)}


def test_run_once_ingest_aggregate_prune_and_the_traffic_report(env, log_path):
    now = time.time()
    lines = [caddy_line("app.example.com", now - 120 + i, status=500 if i % 10 == 0 else 200,
                        duration=0.010 + i / 1000, size=1000) for i in range(100)]
    lines += [caddy_line("api.example.com", now - 60, duration=0.5)] * 3
    append(log_path, "".join(lines) + "not json\n")

    ingest = run_cli(["run-once", "ingest", "--json"], env)
    assert ingest.returncode == 0, ingest.stderr
    summary = json.loads(ingest.stdout)["summary"]
    assert summary["inserted"] == 103 and summary["counted"] == 103 and summary["malformed"] == 1

    aggregate = run_cli(["run-once", "aggregate", "--json"], env)
    assert aggregate.returncode == 0, aggregate.stderr
    assert json.loads(aggregate.stdout)["summary"]["rows"] == 0  # ingest counted them

    prune = run_cli(["run-once", "prune", "--json"], env)
    assert prune.returncode == 0, prune.stderr
    assert json.loads(prune.stdout)["summary"]["deleted"] == 0

    report = run_cli(["traffic", "--since", "1h", "--json"], env)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["bucket"] == "1m"
    app, api = data["routes"]
    assert (app["route_id"], app["requests"], app["errors"], app["bytes"]) == ("r-app", 100, 10, 100_000)
    assert app["p50_ms"] >= 10 * 0.9 and app["p99_ms"] <= 110 * 1.1
    assert api["requests"] == 3 and 450 <= api["p95_ms"] <= 550

    text = run_cli(["traffic", "--route", "r-api"], env)
    assert text.returncode == 0, text.stderr
    assert "api.example.com" in text.stdout and "app.example.com" not in text.stdout
    assert "p99 ms" in text.stdout

    status = run_cli(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["ingest"]["lines"] == 104 and state["aggregate"]["pending_rows"] == 0


def test_a_missing_log_is_a_skip_not_an_error(env, log_path):
    done = run_cli(["run-once", "ingest", "--json"], env)
    result = json.loads(done.stdout)
    assert result["status"] == "skipped" and "no access log at" in result["error"]


@pytest.mark.parametrize("variable,value", [
    ("PROXYOS_PRUNE_BATCH", "9000"),
    ("PROXYOS_RETENTION_ACCESS_LOG_DAYS", "a week"),
    ("PROXYOS_TRAFFIC_INGEST_BATCH", "0"),
])
def test_a_bad_setting_is_one_clear_line_and_exit_2(env, variable, value):
    done = run_cli(["run-once", "prune"], {**env, variable: value})
    assert done.returncode == 2
    assert variable in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_bad_since_says_what_it_accepts(env):
    done = run_cli(["traffic", "--since", "yesterday"], env)
    assert done.returncode != 0 and "90s, 30m, 1h or 7d" in (done.stderr + done.stdout)
