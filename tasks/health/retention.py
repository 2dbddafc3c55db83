"""The health area's retention rules: results kept per route and per stream, and by age."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.retention.rules import DAY_S, Rule


@dataclass(frozen=True)
class HealthRetention:
    keep: int = 100  # newest N results per route / stream (ProxyOS's health checker keeps 100)
    days: float = 30  # 0: no age limit


def rules(r: HealthRetention) -> list[Rule]:
    out = []
    for table, group in (("health_checks", "route_id"), ("stream_health_checks", "stream_id")):
        out.append(Rule(f"{table} beyond the newest {r.keep} per {group}", table,
                        "checked_at", group_column=group, keep=r.keep))
        if r.days:
            out.append(Rule(f"{table} older than {r.days:g} days", table, "checked_at",
                            max_age_s=r.days * DAY_S))
    return out
