"""What the API tests share: keys made the way ProxyOS makes them, a `serve` process on a
free loopback port, and one call over real HTTP."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import api_keys
from db.sql import new_id
from tests.toolkit.factories import new_secret
from tests.toolkit.processes import free_port, wait_for_start
from workers.api.auth import hmac_hash, sha256_hash


def add_api_key(engine: sa.Engine, secret: str, scopes: Iterable[str], *, name: str | None = None,
                expires_at: int | None = None, legacy: bool = False) -> tuple[str, str]:
    """A key as ProxyOS's apiKeys.create makes one (`pxos_` + base64url of 24 random bytes,
    stored as its HMAC-SHA256 with PROXYOS_SECRET; `legacy`: its plain SHA-256, as older
    ProxyOS stored it): (its id, the key)."""
    key = "pxos_" + base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")
    key_id = new_id()
    with write_transaction(engine) as conn:
        conn.execute(api_keys.insert().values(
            id=key_id, name=name or f"key-{key_id[:6]}", scopes=json.dumps(list(scopes)),
            key_hash=sha256_hash(key) if legacy else hmac_hash(secret, key),
            expires_at=expires_at, created_at=int(time.time())))
    return key_id, key


def serve_env(tmp: Path, database_url: str, queue_url: str | None = None, **extra: str) -> dict[str, str]:
    """`proxyos-worker serve`'s environment: this database, a SQLite queue file beside it
    unless `queue_url`, a PROXYOS_SECRET of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYOS_")}
    env.update(
        PROXYOS_DATABASE_URL=database_url,
        PROXYOS_QUEUE_URL=queue_url or f"sqlite:///{tmp / 'queue.db'}",
        PROXYOS_BACKUP_DIR=str(tmp / "backups"),
        PROXYOS_SECRET=new_secret(),
        PROXYOS_QUEUE_POLL="0.2",
        LOG_LEVEL="info",
    )
    env.update(extra)
    return env


@dataclass
class Answer:
    status: int
    headers: Any
    body: Any


class ApiServer:
    """`proxyos-worker serve` in a new process on a free port, ready once /healthz answers."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = dict(env, PROXYOS_API_LISTEN=f"127.0.0.1:{self.port}")
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("a")
        self.process = subprocess.Popen([sys.executable, "-m", "workers.cli", "serve"], env=self.env,
                                        stdout=self._log, stderr=self._log)
        wait_for_start(self._healthy, "proxyos-worker serve", self.process, log_path)

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def call(self, method: str, path: str, key: str | None = None, body: Any = None, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> Answer:
        headers = dict(headers or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if body is not None:
            data = json.dumps(body).encode()
        response = requests.request(method, self.url + path, data=data, headers=headers, timeout=30)
        try:
            parsed = response.json()
        except ValueError:
            parsed = response.text
        return Answer(response.status_code, response.headers, parsed)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._log.close()
        return code
