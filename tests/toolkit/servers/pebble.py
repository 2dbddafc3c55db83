"""Pebble, the ACME test CA, validating DNS-01 against a BIND; an HTTPS proxy in front
of it that adds ARI; what Pebble's log counts."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..processes import free_port, stop_process, wait_for_start


@dataclass
class Pebble:
    port: int
    mgmt_port: int
    ca_bundle: Path
    proc: subprocess.Popen

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def stop(self) -> None:
        stop_process(self.proc)


def start_pebble(directory: Path, dns_port: int, env: dict | None = None, extra: dict | None = None) -> Pebble:
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server.private_key_pem.write_to_path(str(directory / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    port, mgmt = free_port(), free_port()
    (directory / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(directory / "cert.pem"), "privateKey": str(directory / "key.pem"),
        "httpPort": free_port(), "tlsPort": free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False, **(extra or {}),
    }}))
    log = directory / "pebble.log"
    handle = open(log, "w")  # noqa: SIM115
    proc_env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", **(env or {}))
    proc = subprocess.Popen(
        ["pebble", "-config", str(directory / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
        stdout=handle, stderr=subprocess.STDOUT, env=proc_env, cwd=directory,
    )
    pebble = Pebble(port, mgmt, directory / "ca.pem", proc)
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))

    def ready() -> bool:
        try:
            with urllib.request.urlopen(pebble.directory, context=context, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for_start(ready, "pebble", proc, log)
    return pebble


class AriProxy:
    """A small HTTPS server in front of Pebble 2.4 (which has no ARI): passes every request
    through with its Host header (Pebble builds its URLs from it, so the client keeps
    talking to the proxy and JWS URLs match), adds `renewalInfo` to the directory,
    answers `renewalInfo` requests with `window`, and records each newOrder payload."""

    def __init__(self, pebble: Pebble) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.pebble = pebble
        self.window: tuple[str, str] | None = None
        self.ari_requests: list[str] = []
        self.new_orders: list[dict] = []
        proxy = self
        upstream_ctx = ssl.create_default_context(cafile=str(pebble.ca_bundle))

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "GET" and self.path.startswith("/renewal-info/"):
                    proxy.ari_requests.append(self.path.rsplit("/", 1)[1])
                    start, end = proxy.window
                    self._reply(200, {"Content-Type": "application/json", "Retry-After": "3600"},
                                json.dumps({"suggestedWindow": {"start": start, "end": end}}).encode())
                    return
                if self.path.startswith("/order-plz") and body:
                    payload = json.loads(body)["payload"]
                    proxy.new_orders.append(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
                conn = http.client.HTTPSConnection("127.0.0.1", pebble.port, context=upstream_ctx, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if self.path == "/dir" and response.status == 200:
                    directory = json.loads(data)
                    directory["renewalInfo"] = f"https://{self.headers['Host']}/renewal-info"
                    data = json.dumps(directory).encode()
                headers = {k: v for k, v in response.getheaders()
                           if k.lower() not in ("content-length", "transfer-encoding", "connection")}
                conn.close()
                self._reply(response.status, headers, data)

            def _reply(self, status: int, headers, data: bytes) -> None:
                self.send_response(status)
                for key, value in (headers.items() if isinstance(headers, dict) else headers):
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        folder = pebble.ca_bundle.parent
        context.load_cert_chain(str(folder / "cert.pem"), str(folder / "key.pem"))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pebble_counts(pebble: Pebble) -> dict[str, int]:
    """Orders Pebble created and certificates it issued so far, from its own log."""
    text = (pebble.ca_bundle.parent / "pebble.log").read_text()
    return {"orders": text.count("Added order"), "issued": text.count("Issued certificate serial")}
