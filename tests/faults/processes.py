"""Processes for fault tests: consumers, a private PostgreSQL server; `wait_until` (from
support) for the state they write."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from support import wait_until  # noqa: F401  (the fault tests import it from here)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class PostgresServer:
    """A throw-away PostgreSQL cluster on a free port, run as the `postgres` user, that a
    test may stop and start without disturbing the machine's own server."""

    def __init__(self) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not candidates or shutil.which("runuser") is None or os.geteuid() != 0:
            raise RuntimeError("needs Debian's postgresql package and root")
        self.bin = Path(candidates[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="proxyos-pg-"))
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)

    def _ctl(self, *args: str) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.dir / "server.log"), "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
