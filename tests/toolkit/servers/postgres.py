"""A PostgreSQL server of a test's own, that the test may stop and start without
disturbing the machine's server."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..processes import free_port


class PostgresServer:
    """A throw-away PostgreSQL cluster on a free port, run as the `postgres` user.
    `stop()` and `start()` are the fault a test makes; `close()` removes it."""

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


def start_postgres() -> PostgresServer:
    """Raises RuntimeError (or OSError) where it cannot run: without Debian's
    postgresql package, or without root."""
    return PostgresServer()
