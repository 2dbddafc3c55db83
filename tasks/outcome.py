"""How a job says it did nothing on purpose (recorded as `skipped`, not as an error)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from db.problem import Problem


class Skipped(Problem):
    """Raised by a job that had nothing to do, or must not run here; the message says why."""


class NothingToDo(Skipped):
    """Raised by a job that looked and found nothing to do (no new lines, nothing due).

    A periodic run that ends so leaves no `task_runs` row (every few seconds, such rows
    would tell nothing); `status` still shows when the job last looked. A run someone
    asked for is recorded: as `ok` with `summary` when the job gives one (what it found),
    else as `skipped` with the message."""

    def __init__(self, why: str, summary: Mapping[str, Any] | None = None) -> None:
        super().__init__(why)
        self.summary = summary
