"""Turning database failures into one line a person can act on."""

from __future__ import annotations

import sqlalchemy.exc

from db.problem import Problem


class DatabaseProblem(Problem):
    """A database that cannot be used as it is; the message says what to do."""


_SQLITE_HINTS = (
    (("malformed", "not a database", "file is encrypted"),
     "{where} is corrupt ({detail}); restore a backup with `proxyos-worker db restore PATH`"),
    (("database or disk is full", "disk i/o error"),
     "{where}: the disk is full or failing ({detail}); free some space"),
    (("readonly database", "read-only", "attempt to write a readonly"),
     "{where} is read-only ({detail}); the worker needs write access to the file and "
     "its directory"),
    (("unable to open database file",),
     "cannot open {where} ({detail}); check that the directory exists and is writable"),
    (("database is locked",),
     "{where} stayed locked by another process longer than the busy timeout ({detail})"),
)


def explain(exc: BaseException, where: str) -> str | None:
    """A one-line explanation of a database error, or None when it is not a known kind."""
    orig = getattr(exc, "orig", None) or exc
    detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    lowered = detail.lower()
    for needles, template in _SQLITE_HINTS:
        if any(needle in lowered for needle in needles):
            return template.format(where=where, detail=detail)
    if isinstance(exc, sqlalchemy.exc.OperationalError) and (
        "connection" in lowered or "could not" in lowered
    ):
        return f"cannot reach the database at {where} ({detail})"
    return None
