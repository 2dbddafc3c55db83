"""The run history's retention rule: `task_runs` rows older than N days."""

from __future__ import annotations

from .rules import DAY_S, Rule


def rules(days: float) -> list[Rule]:
    """Finished runs older than `days` (0: kept forever); a run still going is kept."""
    if not days:
        return []
    return [Rule(f"task_runs older than {days:g} days", "task_runs", "started_at",
                 max_age_s=days * DAY_S, condition="status <> 'running'")]
