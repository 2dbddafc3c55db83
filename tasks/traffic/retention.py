"""Every retention rule of the workers, declared here and nowhere else.

The numbers come from `Retention` (the job reads them from environment variables); the
rules turn them into what `prune` deletes. A rule on a table that does not exist (yet)
is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .buckets import bucket_table

DAY_S = 86_400

# access_log rows the aggregate job has counted: never delete one it has not.
# Rows without seq were written (and counted) by ProxyOS itself before the workers.
COUNTED = "(seq IS NULL OR seq <= (SELECT value FROM traffic_state WHERE name = 'aggregated_seq'))"


@dataclass(frozen=True)
class Retention:
    """Retention settings; a number of days of 0 keeps those rows forever."""

    access_log_days: float = 7
    access_log_per_route: int = 1000  # newest N rows per route (ProxyOS's ring); 0: no cap
    health_keep: int = 100  # newest N results per route / stream
    health_days: float = 30
    metrics_days: dict[str, float] = field(
        # 1m: the dashboard's longest view (bandwidth) is 90 days; 0: kept forever
        default_factory=lambda: {"1m": 90, "1h": 400, "1d": 0}
    )
    task_runs_days: float = 30


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


def rules(r: Retention) -> list[Rule]:
    out = []
    if r.access_log_days:
        out.append(Rule(f"access_log older than {r.access_log_days:g} days (counted rows only)",
                        "access_log", "recorded_at", max_age_s=r.access_log_days * DAY_S,
                        condition=COUNTED))
    if r.access_log_per_route:
        out.append(Rule(f"access_log beyond the newest {r.access_log_per_route} per route "
                        "(counted rows only)", "access_log", "recorded_at",
                        group_column="route_id", keep=r.access_log_per_route, condition=COUNTED))
    for table, group in (("health_checks", "route_id"), ("stream_health_checks", "stream_id")):
        out.append(Rule(f"{table} beyond the newest {r.health_keep} per {group}", table,
                        "checked_at", group_column=group, keep=r.health_keep))
        if r.health_days:
            out.append(Rule(f"{table} older than {r.health_days:g} days", table, "checked_at",
                            max_age_s=r.health_days * DAY_S))
    for size, days in r.metrics_days.items():
        table = bucket_table(size)
        if days:
            out.append(Rule(f"{table} {size} buckets older than {days:g} days",
                            table, "bucket_ts", max_age_s=days * DAY_S,
                            condition=f"bucket = '{size}'", scale=1000))
    if r.task_runs_days:
        out.append(Rule(f"task_runs older than {r.task_runs_days:g} days", "task_runs",
                        "started_at", max_age_s=r.task_runs_days * DAY_S,
                        condition="status <> 'running'"))
    return out
