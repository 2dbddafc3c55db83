"""Debian's `caddy` for the certificate tests: started on free loopback ports with its
admin API, ready when the admin endpoint answers (polled, not slept on), and stopped or
started again by the tests. `proxyos_config` builds a configuration in the shape the
ProxyOS dashboard sends (`caddy/base-config.json`, `buildCaddyRoute`, `buildTlsPolicy`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import requests
from cryptography import x509

from ..processes import free_port, stop_process, wait_for_start


@dataclass
class Caddy:
    directory: Path
    admin_port: int
    https_port: int
    http_port: int
    proc: subprocess.Popen | None = None
    boot: dict = field(default_factory=dict)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log(self) -> Path:
        return self.directory / "caddy.log"

    def start(self, config: dict | None = None) -> None:
        """Start (again) from `config`, by default the base configuration it was first
        started with, as ProxyOS's container starts Caddy from base-config.json."""
        path = self.directory / "boot.json"
        path.write_text(json.dumps(config or self.boot))
        env = dict(os.environ, HOME=str(self.directory), XDG_DATA_HOME=str(self.directory / "data"),
                   XDG_CONFIG_HOME=str(self.directory / "config"))
        handle = open(self.log, "a")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen([shutil.which("caddy") or "/usr/bin/caddy", "run", "--config", str(path)],
                                     stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=self.directory)

        def ready() -> bool:
            try:
                return requests.get(f"{self.admin_url}/config/", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for_start(ready, "caddy", self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def load(self, config: dict) -> None:
        """POST /load: Caddy's whole configuration replaced, as ProxyOS's loadConfig does."""
        response = requests.post(f"{self.admin_url}/load", json=config, timeout=30)
        assert response.status_code == 200, response.text

    def patch_routes(self, routes: list[dict]) -> None:
        """ProxyOS's replaceRoutes: PATCH the server's routes."""
        response = requests.patch(f"{self.admin_url}/config/apps/http/servers/main/routes", json=routes, timeout=30)
        assert response.status_code == 200, response.text

    def loaded(self) -> list[dict]:
        response = requests.get(f"{self.admin_url}/config/apps/tls/certificates/load_pem", timeout=10)
        return (response.json() or []) if response.status_code == 200 else []

    def served(self, name: str, timeout: float = 5.0) -> x509.Certificate:
        """The certificate Caddy presents in a TLS handshake for SNI `name`."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def route(route_id: str, names: list[str]) -> dict:
    """A route as ProxyOS's buildCaddyRoute writes it (its handler kept simple)."""
    return {"@id": f"proxyos-route-{route_id}", "match": [{"host": names}],
            "handle": [{"handler": "static_response", "status_code": 200, "body": "ok"}], "terminal": True}


def dns_policy(names: list[str], pebble) -> dict:
    """buildTlsPolicy for tls_mode 'dns', pointed at Pebble. ProxyOS's issuer carries
    `challenges.dns.provider` ({"name": "cloudflare", ...}); Debian's Caddy has no DNS
    provider module and refuses the whole configuration with one ("unknown module:
    dns.providers.cloudflare"), so the challenge is left to Caddy's defaults: what is
    measured is whether Caddy places an order at all."""
    return {"subjects": names, "issuers": [{"module": "acme", "ca": pebble.directory,
                                            "trusted_roots_pem_files": [str(pebble.ca_bundle)]}]}


def proxyos_config(caddy: Caddy, routes: list[dict] | None = None, policies: list[dict] | None = None,
                   skip_certificates: list[str] | None = None) -> dict:
    """caddy/base-config.json on loopback ports, with routes and TLS policies as ProxyOS
    pushes them; `skip_certificates` is the setting docs/proxyos.md asks a user to add."""
    main: dict = {"listen": [f"127.0.0.1:{caddy.https_port}"], "routes": routes or [],
                  "logs": {"default_logger_name": "access"}}
    if skip_certificates:
        main["automatic_https"] = {"skip_certificates": skip_certificates}
    return {
        "admin": {"listen": f"127.0.0.1:{caddy.admin_port}", "enforce_origin": False},
        "logging": {"logs": {"default": {"level": "INFO"},
                             "access": {"writer": {"output": "file", "filename": str(caddy.directory / "access.log")},
                                        "encoder": {"format": "json"}, "include": ["http.log.access"]}}},
        "storage": {"module": "file_system", "root": str(caddy.directory / "storage")},
        "apps": {
            "http": {"http_port": caddy.http_port, "https_port": caddy.https_port, "servers": {"main": main}},
            "tls": {"automation": {"policies": policies or []}},
        },
    }


def start_caddy(directory: Path) -> Caddy:
    directory.mkdir(parents=True, exist_ok=True)
    caddy = Caddy(directory, free_port(), free_port(), free_port())
    caddy.boot = proxyos_config(caddy)
    caddy.start()
    return caddy
