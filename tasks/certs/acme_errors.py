"""Calls into the acme library, with `badNonce` retried and every failure turned into a
CertError a person can act on."""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from acme import errors as acme_errors
from acme import messages

from .errors import CertError

T = TypeVar("T")
NONCE_ATTEMPTS = 5
_RETRY_AFTER = re.compile(r"retry after (\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)", re.IGNORECASE)

HINTS = {
    "unauthorized": "the CA did not see the TXT value, or the account may not issue for this name",
    "rejectedIdentifier": "the CA will not issue for this name",
    "caa": "a CAA record forbids this CA",
    "dns": "the CA could not look the challenge record up",
    "externalAccountRequired": "set PROXYOS_ACME_EAB_KID and PROXYOS_ACME_EAB_HMAC_KEY",
    "accountDoesNotExist": "the account is unknown to the CA",
}


def retry_time(detail: str) -> float | None:
    match = _RETRY_AFTER.search(detail or "")
    if not match:
        return None
    return float(
        calendar.timegm(time.strptime(match.group(1).replace("T", " "), "%Y-%m-%d %H:%M:%S"))
    )


def describe(error: messages.Error, what: str) -> CertError:
    code = error.code or "error"
    detail = (error.detail or "").strip()
    message = f"{what}: CA answered {code}" + (f": {detail}" if detail else "")
    if code == "rateLimited":
        when = retry_time(detail)
        suffix = (
            time.strftime(" (retry after %Y-%m-%d %H:%M UTC)", time.gmtime(when)) if when else ""
        )
        return CertError(f"{what}: CA rate limit reached: {detail}{suffix}", retry_at=when)
    if code in HINTS:
        message += f" ({HINTS[code]})"
    return CertError(message)


def call(fn: Callable[..., T], *args, what: str, **kwargs) -> T:
    for attempt in range(NONCE_ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except messages.Error as exc:
            if exc.code == "badNonce" and attempt + 1 < NONCE_ATTEMPTS:
                continue
            raise describe(exc, what) from None
        except acme_errors.ConflictError:
            raise
        except requests.exceptions.SSLError:
            raise CertError(
                f"{what}: TLS verification of the CA failed (PROXYOS_ACME_CA_BUNDLE?)"
            ) from None
        except requests.RequestException as exc:
            raise CertError(f"{what}: the CA is unreachable ({type(exc).__name__})") from None
        except acme_errors.Error as exc:
            raise CertError(f"{what}: {type(exc).__name__}: {str(exc)[:300]}") from None
    raise AssertionError("unreachable")
