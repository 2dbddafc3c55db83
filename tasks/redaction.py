"""Known secret values, scrubbed from every log line and recorded error message.

Code that decrypts or loads a secret registers it here at the moment of use; the
workers' log handlers and run history pass all text through `redact`. This is a second
line of defence: messages are written not to contain secrets in the first place.
"""

from __future__ import annotations

import threading

_MIN_LENGTH = 6  # shorter values would blank out ordinary words
_lock = threading.Lock()
_secrets: set[str] = set()

MASK = "[redacted]"


def remember(*values: str | None) -> None:
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= _MIN_LENGTH)


def redact(text: str) -> str:
    if not _secrets:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
