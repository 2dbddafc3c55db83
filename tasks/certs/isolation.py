"""One item's fault, or the system's? A loop over user data (routes, certificates,
providers) records an item's exception on that item and goes on; only a fault of the
system (the database unreachable, locked, corrupt or full; memory) fails the run."""

from __future__ import annotations

import sqlalchemy as sa

# Raised by the database for one statement's values, not for the database itself.
_ITEM_ERRORS = (sa.exc.IntegrityError, sa.exc.DataError)


def system_fault(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and not isinstance(exc, _ITEM_ERRORS)


def reason(exc: BaseException) -> str:
    """One line for a person: the exception's kind and its first words."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def number(value: object) -> float | None:
    """A numeric column's value as a finite number, or None for anything else (SQLite
    keeps text or bytes in an INTEGER column if someone writes them)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
        return None
    return value
