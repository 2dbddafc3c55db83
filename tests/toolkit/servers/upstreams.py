"""Upstreams on loopback: an HTTP server answering with the code, body and delay named in
the query string (over HTTPS too, with a context given), a port that accepts and never
answers, and `python -m http.server` in a process of its own."""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..processes import free_port, wait_until


class _Answer(BaseHTTPRequestHandler):
    """GET /anything?code=503&body=text&delay=0.2&location=/x (or size=N&tail=text: N `x`s
    then text; or ab=N: N pseudo-random `a`s and `b`s); by default 200 with `ok`."""

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


class HttpUpstream(ThreadingHTTPServer):
    """The answering server; `seen` lists each request's path and Host header."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, context: ssl.SSLContext | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Answer)
        self.seen: list[dict] = []
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def start_http_upstream(context: ssl.SSLContext | None = None, port: int = 0) -> HttpUpstream:
    """The answering server on a free port (or `port`: one started again), served by a
    thread; HTTPS with `context`."""
    server = HttpUpstream(context, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class BlackHole:
    """Accepts TCP connections and never answers; `accepted` is set at the first."""

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

    def stop(self) -> None:
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


def start_blackhole() -> BlackHole:
    return BlackHole()


class UpstreamProcess:
    """`python -m http.server` serving `folder` on a loopback port: 200 for GET /. In a
    process of its own, so that answering many checks takes nothing from the test's."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "-d", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, timeout=30, what="an upstream HTTP server")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_upstream_process(folder: Path) -> UpstreamProcess:
    return UpstreamProcess(folder)
