"""The traffic area's retention rules: `access_log` by age and per route (ProxyOS's ring),
and the `traffic_metrics` / `traffic_rollups` buckets by age, per size."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.retention.rules import DAY_S, Rule

from .buckets import bucket_table

# access_log rows the aggregate job has counted: never delete one it has not.
# Rows without seq were written (and counted) by ProxyOS itself before the workers.
COUNTED = "(seq IS NULL OR seq <= (SELECT value FROM traffic_state WHERE name = 'aggregated_seq'))"


@dataclass(frozen=True)
class TrafficRetention:
    """A number of days of 0 keeps those rows forever."""

    access_log_days: float = 7
    access_log_per_route: int = 1000  # newest N rows per route (ProxyOS's ring); 0: no cap
    metrics_days: dict[str, float] = field(
        # 1m: the dashboard's longest view (bandwidth) is 90 days; 0: kept forever
        default_factory=lambda: {"1m": 90, "1h": 400, "1d": 0}
    )


def rules(r: TrafficRetention) -> list[Rule]:
    out = []
    if r.access_log_days:
        out.append(Rule(f"access_log older than {r.access_log_days:g} days (counted rows only)",
                        "access_log", "recorded_at", max_age_s=r.access_log_days * DAY_S,
                        condition=COUNTED))
    if r.access_log_per_route:
        out.append(Rule(f"access_log beyond the newest {r.access_log_per_route} per route "
                        "(counted rows only)", "access_log", "recorded_at",
                        group_column="route_id", keep=r.access_log_per_route, condition=COUNTED))
    for size, days in r.metrics_days.items():
        table = bucket_table(size)
        if days:
            out.append(Rule(f"{table} {size} buckets older than {days:g} days",
                            table, "bucket_ts", max_age_s=days * DAY_S,
                            condition=f"bucket = '{size}'", scale=1000))
    return out
