"""A retention rule: which rows of one table may be deleted."""

from __future__ import annotations

from dataclasses import dataclass

DAY_S = 86_400


@dataclass(frozen=True)
class Rule:
    """Delete rows of `table` that are older than `max_age_s` (by `time_column`, which
    counts `scale` units a second), or, with `keep`, all but the newest `keep` rows of
    each `group_column` value; only rows that also meet `condition` are ever deleted."""

    name: str
    table: str
    time_column: str
    max_age_s: float | None = None
    group_column: str | None = None
    keep: int | None = None
    condition: str = ""
    scale: int = 1
