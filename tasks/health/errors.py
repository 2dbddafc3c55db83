"""Probe failures in words a person can act on."""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
}


def seconds(value: float) -> str:
    return f"{value:g} s"


def describe(exc: BaseException, timeout: float, host: str = "") -> str:
    """What went wrong when probing, e.g. `connection refused`, `timed out after 5 s`."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {seconds(timeout)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return describe_certificate(exc.certificate_error)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return describe_certificate(exc)
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError | ssl.SSLError):
        inner = getattr(exc, "os_error", exc)
        return f"TLS handshake failed ({getattr(inner, 'reason', None) or inner})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return describe_os_error(exc.os_error, host)
    if isinstance(exc, OSError):
        return describe_os_error(exc, host)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed without a response"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return f"invalid HTTP response ({getattr(exc, 'message', None) or exc})"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_certificate(exc: BaseException) -> str:
    message = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    if "mismatch" in message.lower() or "not valid for" in message.lower():
        return f"TLS certificate not valid for this host name ({message})"
    if "expired" in message.lower():
        return f"TLS certificate expired ({message})"
    return f"TLS certificate not trusted ({message})"


def describe_os_error(exc: BaseException, host: str = "") -> str:
    if isinstance(exc, socket.gaierror):
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            return f"DNS name not found ({host})" if host else "DNS name not found"
        return f"DNS lookup failed ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    number = getattr(exc, "errno", None)
    if number in _ERRNO_WORDS:
        return _ERRNO_WORDS[number]
    return f"cannot connect ({getattr(exc, 'strerror', None) or exc})"
