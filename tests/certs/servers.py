"""Real servers for the certificate tests and the benchmark: BIND 9 (authoritative for
test zones, RFC 2136 updates signed with TSIG) and Pebble (the ACME test CA, validating
DNS-01 against that BIND), on free loopback ports in temporary directories."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.update

ZONES = ("example.test", "delegated.test")
TSIG_NAME = "proxyos-test."


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
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


def _wait_for(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
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

@dataclass
class Bind:
    """The authoritative server (`port`) and, in front of it, a forwarding resolver
    (`resolver_port`) for the CA: like a real CA's resolver, it follows CNAMEs from one
    zone into another, which an authoritative-only server does not."""

    port: int
    tsig_secret: str
    directory: Path
    proc: subprocess.Popen
    resolver_port: int = 0
    resolver_proc: subprocess.Popen | None = None

    @property
    def credentials(self) -> dict:
        return {"nameserver": "127.0.0.1", "port": self.port, "tsig_key": TSIG_NAME,
                "tsig_secret": self.tsig_secret, "tsig_algorithm": "hmac-sha256"}

    def txt(self, name: str) -> set[str]:
        response = dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=self.port, timeout=3)
        return {b"".join(r.strings).decode() for rrset in response.answer
                if rrset.rdtype == dns.rdatatype.TXT for r in rrset}

    def update(self, zone: str, name: str, rdtype: str, value: str, ttl: int = 60) -> None:
        keyring = dns.tsigkeyring.from_text({TSIG_NAME: self.tsig_secret})
        update = dns.update.UpdateMessage(zone, keyring=keyring, keyalgorithm="hmac-sha256")
        update.replace(name + ".", ttl, rdtype, value)
        response = dns.query.tcp(update, "127.0.0.1", port=self.port, timeout=5)
        assert response.rcode() == 0, response

    def zone_txt_names(self, zone: str) -> list[str]:
        """Every TXT owner in `zone` (zone transfer over TSIG)."""
        import dns.xfr  # noqa: F401
        import dns.zone

        keyring = dns.tsigkeyring.from_text({TSIG_NAME: self.tsig_secret})
        xfr = dns.query.xfr("127.0.0.1", zone, port=self.port, keyring=keyring, keyalgorithm="hmac-sha256")
        z = dns.zone.from_xfr(xfr)
        return [f"{name}.{zone}" for name, node in z.nodes.items()
                if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)]

    def stop(self) -> None:
        for proc in (self.resolver_proc, self.proc):
            if proc is not None:
                stop_process(proc)


def _named(named: str, conf: Path, log: Path, port: int, what: str) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([named, "-g", "-c", str(conf), "-n", "1"], stdout=handle, stderr=subprocess.STDOUT)

    def ready() -> bool:
        try:
            response = dns.query.udp(dns.message.make_query("example.test", "SOA"), "127.0.0.1",
                                     port=port, timeout=0.5)
            return bool(response.answer)
        except (OSError, dns.exception.DNSException):
            return False

    try:
        _wait_for(ready, what, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def start_bind(directory: Path, forwards: dict[str, int] | None = None) -> Bind:
    """`forwards`: more zones the resolver sends to other servers on loopback (zone -> port)."""
    named = shutil.which("named") or "/usr/sbin/named"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    zones = []
    for zone in ZONES:
        (directory / f"{zone}.zone").write_text(
            f"$TTL 60\n@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 60 60 600 60\n"
            f"@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n@ IN A 127.0.0.1\n"
        )
        zones.append(
            f'zone "{zone}" {{ type primary; file "{directory}/{zone}.zone"; '
            f'allow-update {{ key "{TSIG_NAME}"; }}; allow-transfer {{ key "{TSIG_NAME}"; }}; }};'
        )
    conf = directory / "named.conf"
    conf.write_text(
        f'options {{ directory "{directory}"; pid-file "{directory}/named.pid"; '
        f"listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; "
        f'dnssec-validation no; notify no; session-keyfile "{directory}/session.key"; }};\n'
        f"controls {{ }};\n"
        f'key "{TSIG_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};\n' + "\n".join(zones) + "\n"
    )
    proc = _named(named, conf, directory / "named.log", port, "named")
    bind = Bind(port, secret, directory, proc)
    resolver_dir = directory / "resolver"
    resolver_dir.mkdir(exist_ok=True)
    bind.resolver_port = free_port()
    targets = {zone: port for zone in ZONES} | (forwards or {})
    forward = "\n".join(
        f'zone "{zone}" {{ type forward; forward only; forwarders {{ 127.0.0.1 port {target}; }}; }};'
        for zone, target in targets.items()
    )
    (resolver_dir / "named.conf").write_text(
        f'options {{ directory "{resolver_dir}"; pid-file "{resolver_dir}/named.pid"; '
        f"listen-on port {bind.resolver_port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; "
        "recursion yes; allow-query { 127.0.0.1; }; allow-recursion { 127.0.0.1; }; "
        "dnssec-validation no; max-cache-ttl 0; max-ncache-ttl 0; "
        f'session-keyfile "{resolver_dir}/session.key"; }};\ncontrols {{ }};\n{forward}\n'
    )
    try:
        bind.resolver_proc = _named(named, resolver_dir / "named.conf", resolver_dir / "named.log",
                                    bind.resolver_port, "named (resolver)")
    except BaseException:
        bind.stop()
        raise
    return bind


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

    _wait_for(ready, "pebble", proc, log)
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

    _wait_for(ready, "pdns_server", proc, log)
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
