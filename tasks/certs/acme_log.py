"""The `acme` library logs whole JWS payloads and responses at DEBUG. Keep the URLs and
status lines, drop the bodies, so that nothing a request carries reaches a log."""

from __future__ import annotations

import logging

_OMIT = "[body omitted]"


class _AcmeBodyFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith("JWS payload"):
            record.msg, record.args = "JWS payload: %s", (_OMIT,)
        elif msg.startswith("Sending POST request") and record.args:
            record.msg, record.args = "Sending POST request to %s: %s", (record.args[0], _OMIT)
        elif msg.startswith("Received response") and record.args:
            record.msg, record.args = "Received response: HTTP %s %s", (record.args[0], _OMIT)
        elif msg.startswith(("Storing nonce", "Retrying request after error")):
            return record.levelno > logging.DEBUG
        return True


_FILTER = _AcmeBodyFilter()


def quiet_acme_logging() -> None:
    """Install the filter on the acme loggers (idempotent)."""
    for name in ("acme.client", "acme"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
