"""A small client for Caddy's admin API (`PROXYOS_CADDY_ADMIN_URL`): `http://host:port`
or a unix socket written as Caddy writes it, `unix//path/to/admin.sock`.

Built on `http.client` (a unix socket is one `connect` away), so no dependency is added.
Every write can carry Caddy's ETag as `If-Match`: Caddy answers 412 when the value at the
path changed since it was read, so two writers never lose each other's update.

Caddy 2.8 and later send a GET's ETag as a header (an xxhash of the body), used as it
is. Caddy 2.6 and 2.7 send it as an HTTP trailer, which `http.client` does not expose;
there it is `"<path> <FNV-1a 32 of the body, hex>"` (caddy/admin.go, `etagHasher`,
`makeEtag`), so it is computed from the body that was read. A wrong value could only
cost 412s and a recorded failure, never a lost update."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from db.problem import Problem

MESSAGE_CHARS = 300  # of Caddy's error message, in recorded errors
TRANSIENT_RETRIES = (0.05, 0.1, 0.2, 0.4)  # seconds: Caddy's admin endpoint restarting
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.S)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{60,}")


class CaddyError(Problem):
    """Caddy could not be asked or refused; the message is for a person and holds no key."""


class CaddyUnreachable(CaddyError):
    """No answer: Caddy is down, restarting, or the address is wrong."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient  # refused or reset, not timed out: worth another try at once


class CaddyRefused(CaddyError):
    """Caddy answered with an error status."""

    def __init__(self, message: str, status: int, caddy_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.caddy_message = caddy_message


def fnv1a_32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def etag(path: str, body: bytes) -> str:
    return f'"{path} {fnv1a_32(body):08x}"'


def caddy_message(body: bytes) -> str:
    """Caddy's own words from an error body (`{"error": "..."}`), bounded, with anything
    that looks like PEM or key material cut out: the request held a private key."""
    text = body.decode("utf-8", "replace")
    try:
        found = json.loads(text)
        if isinstance(found, dict) and isinstance(found.get("error"), str):
            text = found["error"]
    except ValueError:
        pass
    text = _BASE64_RUN.sub("[...]", _PEM.sub("[PEM]", text))
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    etag_header: str | None = None  # Caddy >= 2.8; 2.6 sends it as a trailer

    def json(self):
        return json.loads(self.body or b"null")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def parse_admin_url(url: str) -> tuple[str, str | int]:
    """("unix", path) or (host, port); ValueError with what is accepted."""
    if url.startswith("unix//"):
        path = url[len("unix/"):]
        if len(path) < 2:
            raise ValueError("a unix socket path after unix//")
        return "unix", path
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError("http://host:port or unix//path/to/admin.sock")
    if parts.username is not None:
        raise ValueError("http://host:port without user:password (Caddy's admin API takes none)")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError("http://host:port with a port number") from None
    return parts.hostname, port


class AdminClient:
    """Requests to one Caddy admin endpoint. A new connection per request: Caddy closes
    the admin connection after each config change anyway."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._where = parse_admin_url(url)

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self._where
        if host == "unix":
            return _UnixConnection(str(port), self.timeout)
        return http.client.HTTPConnection(host, int(port), timeout=self.timeout)

    def request(self, method: str, path: str, body: object = None, if_match: str | None = None) -> Response:
        """One request; raises CaddyUnreachable when there is no answer. Error statuses
        are returned, not raised (callers decide what a 412 or 404 means).

        Caddy 2.6 restarts its admin endpoint after every configuration change, so a
        request right after one (another writer's, or ours) may find the port closed or
        the connection reset: that is tried again a few times within a second. Safe for
        writes too: a write that did arrive makes its repetition fail with 412 or "key
        already exists", and the caller reads again."""
        for delay in (*TRANSIENT_RETRIES, None):
            try:
                return self._request_once(method, path, body, if_match)
            except CaddyUnreachable as exc:
                if delay is None or not exc.transient:
                    raise
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, body: object, if_match: str | None) -> Response:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if if_match:
            headers["If-Match"] = if_match
        if self._where[0] == "unix":
            headers["Host"] = ""  # what Caddy allows on its unix socket (else "host not allowed")
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return Response(response.status, response.read(), response.getheader("Etag"))
        except (OSError, http.client.HTTPException) as exc:
            raise CaddyUnreachable(
                f"Caddy's admin API at {self.url} did not answer ({_why(exc)}): is Caddy running, "
                "and is PROXYOS_CADDY_ADMIN_URL its admin address?",
                transient=not isinstance(exc, TimeoutError | socket.timeout),
            ) from None
        finally:
            conn.close()

    def refused(self, method: str, path: str, response: Response) -> CaddyRefused:
        said = caddy_message(response.body)
        return CaddyRefused(f"Caddy's admin API refused {method} {path}: HTTP {response.status}: {said}",
                            response.status, said)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__
