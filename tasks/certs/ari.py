"""ACME Renewal Information (RFC 9773): the certificate id and the CA's suggested window."""

from __future__ import annotations

import base64
import datetime
import email.utils
import math
from dataclasses import dataclass

import requests
from cryptography import x509

from .ca import CertificateAuthority

DEFAULT_RETRY = 6 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def cert_id(cert: x509.Certificate) -> str:
    """base64url(AKI keyIdentifier) '.' base64url(DER serial)."""
    aki = cert.extensions.get_extension_for_oid(x509.ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    serial = cert.serial_number
    serial_bytes = serial.to_bytes(math.ceil((serial.bit_length() + 1) / 8), "big", signed=True)
    return f"{_b64(aki.value.key_identifier)}.{_b64(serial_bytes)}"


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    retry_after: float  # seconds until the next check


def _parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _retry_after(response: requests.Response, now: float) -> float:
    value = response.headers.get("Retry-After")
    if not value:
        return DEFAULT_RETRY
    try:
        return max(60.0, float(int(value)))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(60.0, parsed.timestamp() - now) if parsed else DEFAULT_RETRY


def fetch_window(ca: CertificateAuthority, ident: str, now: float) -> Window | None:
    """The CA's suggested window for certificate `ident`, or None when the CA offers no
    renewal information; raises requests/ValueError/KeyError on a bad answer."""
    response = ca.renewal_info(ident)
    if response is None:
        return None
    window = response.json()["suggestedWindow"]
    start, end = _parse_time(window["start"]), _parse_time(window["end"])
    if end < start:
        raise ValueError("suggestedWindow ends before it starts")
    return Window(start, end, _retry_after(response, now))
