"""Real upstreams on loopback for the health tests: an HTTP server answering with the
code, body and delay named in the query string, the same over HTTPS with a certificate
from a test CA, a port that accepts and never answers, a closed port, UDP ports."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
import trustme

from db.engine import write_transaction
from db.schema import routes, streams
from db.sql import new_id
from tasks.health.settings import HealthSettings


class Upstream(BaseHTTPRequestHandler):
    """GET /anything?code=503&body=text&delay=0.2&location=/x (or size=N&tail=text: N `x`s
    then text; or ab=N: N pseudo-random `a`s and `b`s)"""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        self.server.seen.append({"path": self.path, "host": self.headers.get("Host")})
        if "delay" in query:
            time.sleep(float(query["delay"]))
        body = query.get("body", "ok").encode()
        if "size" in query:
            body = b"x" * int(query["size"]) + query.get("tail", "").encode()
        if "ab" in query:  # the same pseudo-random `a`s and `b`s every time
            rng = random.Random(12)
            body = bytes(b"ab"[rng.getrandbits(1)] for _ in range(int(query["ab"])))
        self.send_response(int(query.get("code", 200)))
        if "location" in query:
            self.send_header("Location", query["location"])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Upstream)
        self.seen: list[dict] = []
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


def _serve(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def upstream() -> Iterator[Server]:
    yield from _serve(Server())


@pytest.fixture
def upstream2() -> Iterator[Server]:
    yield from _serve(Server())


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_upstream(ca: trustme.CA) -> Iterator[Server]:
    """HTTPS on 127.0.0.1 with a certificate for `localhost`, `127.0.0.1` and
    `backend.test` from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "backend.test").configure_cert(context)
    server = Server(context)
    server.sni = []
    context.sni_callback = lambda _sock, name, _ctx: server.sni.append(name)
    yield from _serve(server)


class BlackHole:
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.accepted = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        """Stop listening, then hang up on every connection held (once)."""
        if self.sock.fileno() < 0:
            return
        with contextlib.suppress(OSError):  # wakes the accepting thread
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(10)  # no connection is added after this
        for conn in self.held:
            with contextlib.suppress(OSError):  # the peer may have gone already
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def blackhole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def closed_port() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def udp_listener() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def settings() -> HealthSettings:
    """Short timeouts keep the tests quick; the rules are the same."""
    return HealthSettings(timeout=1.0, udp_wait=0.5, write_delay=0.05)


def add_route(engine: sa.Engine, upstreams, **columns) -> str:
    route_id = columns.pop("id", None) or new_id()
    now = int(time.time())
    values = {
        "id": route_id,
        "name": columns.pop("name", route_id),
        "domain": f"{route_id.lower()}.example.test",
        "upstream_type": "http",
        "upstreams": upstreams if isinstance(upstreams, str) else json.dumps(upstreams),
        "created_at": now,
        "updated_at": now,
        **columns,
    }
    with write_transaction(engine) as conn:
        conn.execute(routes.insert().values(**values))
    return route_id


def add_stream(engine: sa.Engine, host: str, port: int, protocol: str = "tcp", **columns) -> str:
    stream_id = columns.pop("id", None) or new_id()
    now = int(time.time())
    with write_transaction(engine) as conn:
        conn.execute(
            streams.insert().values(
                id=stream_id,
                listen_port=columns.pop("listen_port", free_port()),
                protocol=protocol,
                upstream_host=host,
                upstream_port=port,
                created_at=now,
                updated_at=now,
                **columns,
            )
        )
    return stream_id


def ups(*addresses: str, **extra) -> list[dict]:
    return [{"address": a, **extra} for a in addresses]
