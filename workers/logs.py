"""Logging set-up: text or JSON lines, with known secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import sys
import time

from tasks.redaction import redact


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(RedactingFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        # Again once serialized: `redact` knows the escaped forms JSON gives a secret.
        return redact(json.dumps(entry, default=str))


# Huey's lines for every task it runs: at two a task and a periodic job every 5 s, they
# would be most of an idle worker's log. Shown at DEBUG; our runner logs what a run did.
HUEY_PER_TASK_LINES = frozenset({"Executing %s", "%s executed in %0.3fs", "Added task %s to schedule, eta %s"})


class HueyPerTaskLinesAtDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in HUEY_PER_TASK_LINES or logging.getLogger().isEnabledFor(logging.DEBUG)


def configure(level: int, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The acme client logs whole request and response bodies at DEBUG; keep it quieter
    # than our own debug output. Redaction applies either way.
    logging.getLogger("acme.client").setLevel(max(level, logging.INFO))
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    huey = logging.getLogger("huey")
    huey.filters[:] = [f for f in huey.filters if not isinstance(f, HueyPerTaskLinesAtDebug)]
    huey.addFilter(HueyPerTaskLinesAtDebug())
