"""The deploy hook: waited on for its own exit only (a background child does not hold the
issuance), killed with its whole process group on timeout, in a minimal environment."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from tasks.certs import hook
from tasks.certs.hook import run_deploy_hook
from tests.toolkit.processes import wait_until

FORBIDDEN = ("PROXYOS_DATABASE_URL", "PROXYOS_QUEUE_URL", "PROXYOS_SECRET", "PROXYOS_ACME_EAB_HMAC_KEY",
             "PGPASSWORD", "PGUSER", "DATABASE_URL", "REDIS_URL", "PROXYOS_TEST_DATABASE_URL")


def _run(command: str, tmp_path: Path, **kwargs) -> str | None:
    return run_deploy_hook(command, "cert-id-1", "www.example.test", ["www.example.test", "*.example.test"],
                           tmp_path / "fullchain.pem", tmp_path / "privkey.pem", **kwargs)


def _gone(pid: int) -> bool:
    """The process no longer runs (gone, or a zombie nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _kill(pid_file: Path) -> None:
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_background_child_does_not_hold_the_issuance(tmp_path):
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    try:
        assert _run(f"sleep 15 & echo $! > {pid_file}; exit 0", tmp_path) is None
        took = time.monotonic() - started
        assert took < 5, f"the hook's background child held the issuance {took:.1f} s"
        assert not _gone(int(pid_file.read_text()))  # the child is the hook's business: it runs on
    finally:
        _kill(pid_file)


def test_timeout_kills_the_whole_process_group(tmp_path, monkeypatch):
    monkeypatch.setattr(hook, "TIMEOUT", 1.0)
    pid_file = tmp_path / "child.pid"
    try:
        problem = _run(f"sleep 60 & echo $! > {pid_file}; sleep 60", tmp_path)
        assert problem == "deploy hook did not finish within 1 s (its processes were killed)"
        child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the pid file"))
        wait_until(lambda: _gone(child), timeout=10, what="the hook's background child to be killed")
    finally:
        _kill(pid_file)


def test_minimal_environment(tmp_path, monkeypatch):
    for name in FORBIDDEN:
        monkeypatch.setenv(name, f"secret-value-of-{name}")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("SOME_OTHER_SERVICE_TOKEN", "tok-123456789")
    out = tmp_path / "env.out"
    assert _run(f"env > {out}", tmp_path) is None
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    for name in FORBIDDEN + ("SOME_OTHER_SERVICE_TOKEN",):
        assert name not in seen, name
    assert "secret-value-of" not in out.read_text()
    assert seen["PATH"] and seen["HOME"] and seen["LANG"] == "C.UTF-8"
    assert seen["PROXYOS_CERT_ID"] == "cert-id-1" and seen["PROXYOS_CERT_DOMAIN"] == "www.example.test"
    assert seen["PROXYOS_CERT_NAMES"] == "www.example.test *.example.test"
    assert seen["PROXYOS_CERT_FULLCHAIN"].endswith("fullchain.pem")
    assert seen["PROXYOS_CERT_KEY"].endswith("privkey.pem")


def test_failure_reports_the_last_line_of_a_large_output(tmp_path):
    command = "head -c 5000000 /dev/zero | tr '\\0' x; echo; echo reload refused >&2; exit 3"
    assert _run(command, tmp_path) == "deploy hook exited with status 3: reload refused"
    assert _run("exit 4", tmp_path) == "deploy hook exited with status 4"


@pytest.mark.parametrize("command", ["", "   "])
def test_empty_command_is_not_run(tmp_path, command):
    assert _run(command, tmp_path) is None
