"""PowerDNS Authoritative (Debian's pdns-server, SQLite backend) with its HTTP API."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..processes import free_port, stop_process, wait_for_start


@dataclass
class PowerDNS:
    """PowerDNS Authoritative (Debian's pdns-server, SQLite backend) with its HTTP API."""

    port: int
    api_port: int
    api_key: str
    proc: subprocess.Popen

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def stop(self) -> None:
        stop_process(self.proc)


def start_powerdns(directory: Path, port: int, zone: str = "pdns.test") -> PowerDNS:
    import sqlite3

    import requests

    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "pdns.sqlite3"
    schema = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql").read_text()
    with sqlite3.connect(database) as conn:
        conn.executescript(schema)
    api_port, api_key = free_port(), secrets.token_hex(16)
    conf = directory / "pdns.conf"
    conf.write_text("\n".join([
        "launch=gsqlite3", f"gsqlite3-database={database}", "local-address=127.0.0.1", f"local-port={port}",
        "api=yes", f"api-key={api_key}", "webserver=yes", "webserver-address=127.0.0.1",
        f"webserver-port={api_port}", "webserver-allow-from=127.0.0.0/8", f"socket-dir={directory}",
        "guardian=no", "daemon=no", "disable-syslog=yes", "loglevel=4", "cache-ttl=0", "negquery-cache-ttl=0",
        "query-cache-ttl=0", "zone-cache-refresh-interval=0", "",
    ]))
    log = directory / "pdns.log"
    handle = open(log, "w")  # noqa: SIM115
    proc = subprocess.Popen(["pdns_server", f"--config-dir={directory}"], stdout=handle, stderr=subprocess.STDOUT)
    server = PowerDNS(port, api_port, api_key, proc)
    headers = {"X-API-Key": api_key}

    def ready() -> bool:
        try:
            return requests.get(f"{server.api_url}/api/v1/servers/localhost", headers=headers, timeout=1).ok
        except requests.RequestException:
            return False

    wait_for_start(ready, "pdns_server", proc, log)
    created = requests.post(f"{server.api_url}/api/v1/servers/localhost/zones", headers=headers, timeout=10, json={
        "name": f"{zone}.", "kind": "Native", "nameservers": [f"ns1.{zone}."],
        "rrsets": [{"name": f"ns1.{zone}.", "type": "A", "ttl": 60, "changetype": "REPLACE",
                    "records": [{"content": "127.0.0.1", "disabled": False}]},
                   {"name": f"{zone}.", "type": "A", "ttl": 60, "changetype": "REPLACE",
                    "records": [{"content": "127.0.0.1", "disabled": False}]}],
    })
    if created.status_code != 201:
        server.stop()
        raise RuntimeError(f"pdns zone creation failed: {created.status_code} {created.text}")
    return server
