"""Processes for the tests: `proxyos-worker` run as a user would (one command, or a
consumer that keeps running), waiting for state another thread or process writes, free
loopback ports, and starting and stopping a server's process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `proxyos-worker ARGS` in a new process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Consumer:
    """`proxyos-worker run ...` in a new process, logging to a file (a pipe could fill up)."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "run", *args], env=env, stdout=self._log, stderr=self._log
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        self._log.close()


def wait_until(
    predicate: Callable[[], Any], timeout: float = 60.0, what: str = "a condition", interval: float = 0.05
) -> Any:
    """Poll `predicate` until it returns something true, and return that; for state that
    another thread or process writes (a row, a file, a log line) with nothing to await.

    An exception from `predicate` counts as "not yet" (what is polled may be down for a
    moment: a fault test waits for it to come back); the last one is named if time runs
    out. The failure says what was awaited and for how long."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            error = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{error}") from last_error
        time.sleep(interval)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, for TCP and UDP alike (bound, then
    released)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def wait_for_start(check: Callable[[], bool], what: str, proc: subprocess.Popen, log: Path,
                   timeout: float = 30.0) -> None:
    """Poll `check` (backing off) until the server `proc` answers; fail with the tail of
    its log if it exits first or is not ready in time."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if check():
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.3)
    raise RuntimeError(f"{what} did not become ready:\n{log.read_text()[-3000:]}")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
