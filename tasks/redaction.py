"""Known secret values, scrubbed from every log line and recorded error message.

Code that decrypts or loads a secret registers it here at the moment of use; the
workers' log handlers and run history pass all text through `redact`. This is a second
line of defence: messages are written not to contain secrets in the first place.

Text is often redacted after it was serialized (a JSON log line, a `task_runs` summary),
where a secret with non-ASCII characters, quotes or backslashes no longer appears as
written. So each secret is masked in every form it takes: raw, JSON-escaped (with and
without `ensure_ascii`, once or nested), Python's repr, percent-encoded."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse

_MIN_LENGTH = 6  # shorter values would blank out ordinary words
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

MASK = "[redacted]"


def forms(secret: str) -> set[str]:
    """Every way `secret` may be written out by a serializer."""
    found = {secret, repr(secret)[1:-1], secret.encode("unicode_escape").decode("ascii"),
             urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for ensure_ascii in (True, False):
        once = json.dumps(secret, ensure_ascii=ensure_ascii)[1:-1]
        found |= {once, json.dumps(once, ensure_ascii=ensure_ascii)[1:-1]}
    return {form for form in found if len(form) >= _MIN_LENGTH}


def remember(*values: str | None) -> None:
    global _pattern
    new = {v for v in values if isinstance(v, str) and len(v) >= _MIN_LENGTH}
    with _lock:
        if new <= _secrets:
            return
        _secrets.update(new)
        every = set().union(*(forms(s) for s in _secrets))
        # Longest first: at one position the escaped form (longer) wins over the raw
        # one, so masking never leaves half an escape sequence behind.
        _pattern = re.compile("|".join(re.escape(f) for f in sorted(every, key=len, reverse=True)))


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub(MASK, text)
