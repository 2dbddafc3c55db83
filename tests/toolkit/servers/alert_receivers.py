"""Where notifications go, on loopback: a webhook receiver that answers each request as
its script says (a status code, or "hang" to answer only after the client gave up) and
records every request; an SMTP server (aiosmtpd) with optional login that keeps every
message."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.toolkit.processes import free_port


@dataclass
class Received:
    headers: dict
    body: dict
    answered: int | str
    at: float = field(default_factory=time.time)

    @property
    def delivery_id(self) -> str:
        return self.headers.get("X-ProxyOS-Delivery", "")


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.next_answer()
        self.server.record(Received(dict(self.headers), json.loads(raw), answer))
        if answer == "hang":
            self.server.released.wait(self.server.hang_seconds)
            answer = 200
        self.send_response(int(answer))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


class WebhookReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: list[int | str] | None = None, hang_seconds: float = 30.0) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.script = list(script or [])
        self.hang_seconds = hang_seconds
        self.released = threading.Event()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def next_answer(self) -> int | str:
        with self._lock:
            return self.script.pop(0) if self.script else 200

    def record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def accepted(self) -> list[Received]:
        """The requests answered 2xx at once."""
        with self._lock:
            return [r for r in self.requests if r.answered in (200, 201, 204)]

    def stop(self) -> None:
        self.released.set()
        self.shutdown()
        self.server_close()


class _Keeper:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, _server, _session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@dataclass
class SmtpServer:
    controller: Controller
    keeper: _Keeper
    port: int

    @property
    def messages(self) -> list:
        return self.keeper.messages

    def stop(self) -> None:
        self.controller.stop()


def start_smtp(user: str | None = None, password: str | None = None) -> SmtpServer:
    """An SMTP server on loopback; with `user`, it takes AUTH (over plain text: a test)."""
    keeper, port = _Keeper(), free_port()

    def check(_server, _session, _envelope, mechanism, auth_data) -> AuthResult:
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)

    kwargs = {"authenticator": check, "auth_require_tls": False} if user else {}
    controller = Controller(keeper, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return SmtpServer(controller, keeper, port)
