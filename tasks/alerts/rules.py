"""The workers' rule types in ProxyOS's `alert_rules`, and their configs (JSON objects in
ProxyOS's `AlertRuleConfig` style, camelCase). ProxyOS's evaluator skips types it does not
know, and the workers skip ProxyOS's. A rule whose config is bad is a `RuleError` naming
the rule and the field; the other rules are unaffected."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.problem import Problem
from db.schema import alert_rules

# field -> (default, minimum, maximum); a list field holds numbers in that range
_COMMON = {"cooldownMinutes": (15, 1, 1440), "groupSeconds": (15, 0, 3600)}
TYPES: dict[str, dict[str, tuple[Any, int, int]]] = {
    "route_unhealthy": {**_COMMON, "holdMinutes": (0, 0, 1440), "recovery": (True, 0, 1)},
    "stream_unhealthy": {**_COMMON, "holdMinutes": (0, 0, 1440), "recovery": (True, 0, 1), "streamId": (None, 1, 100)},
    "cert_renewal_failed": {**_COMMON, "failures": (3, 1, 100)},
    "cert_expiring_each": {**_COMMON, "thresholdsDays": ([30, 14, 7, 1], 1, 365), "daysBeforeExpiry": (None, 1, 365)},
}
TARGETED = ("route_unhealthy",)  # target_route_id names one route (else: every route)


class RuleError(Problem):
    pass


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    type: str
    target_route_id: str | None
    config: dict = field(default_factory=dict)
    last_fired_at: int | None = None


def _check(rule_name: str, key: str, value: Any, spec: tuple[Any, int, int]) -> Any:
    default, low, high = spec
    where = f"alert rule {rule_name!r}: {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise RuleError(f"{where} must be true or false")
        return value
    if isinstance(default, list) or key == "thresholdsDays":
        if (not isinstance(value, list) or not value or len(value) > 20
                or not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value)):
            raise RuleError(f"{where} must be a list of 1 to 20 whole numbers {low}-{high}")
        return sorted(set(value), reverse=True)
    if key == "streamId":
        if not isinstance(value, str) or not low <= len(value) <= high:
            raise RuleError(f"{where} must be a stream's id")
        return value
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RuleError(f"{where} must be a whole number {low}-{high}")
    return value


def parse_config(name: str, type_: str, text: Any) -> dict:
    """The config with defaults filled in; RuleError on anything else."""
    spec = TYPES.get(type_)
    if spec is None:
        raise RuleError(f"alert rule {name!r}: {type_!r} is not one of the workers' types ({', '.join(TYPES)})")
    try:
        raw = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        raw = None
    if not isinstance(raw, dict):
        raise RuleError(f"alert rule {name!r}: config is not a JSON object")
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise RuleError(f"alert rule {name!r}: unknown config field {unknown[0]!r} (known: {', '.join(spec)})")
    config = {key: _check(name, key, raw[key], s) if key in raw else s[0] for key, s in spec.items()}
    if type_ == "cert_expiring_each" and "daysBeforeExpiry" in raw and "thresholdsDays" not in raw:
        config["thresholdsDays"] = [config["daysBeforeExpiry"]]  # ProxyOS's one threshold
    return config


def parse(row: Any) -> Rule:
    name = row.name if isinstance(row.name, str) else str(row.id)
    return Rule(id=row.id, name=name, type=row.type, target_route_id=row.target_route_id,
                config=parse_config(name, row.type, row.config), last_fired_at=row.last_fired_at)


def load(conn: Connection, enabled_only: bool = True) -> tuple[list[Rule], dict[str, str]]:
    """The workers' rules (enabled ones by default), and a problem per bad rule id."""
    query = sa.select(alert_rules).where(alert_rules.c.type.in_(list(TYPES))).order_by(alert_rules.c.created_at)
    if enabled_only:
        query = query.where(alert_rules.c.enabled == 1)
    rules, problems = [], {}
    for row in conn.execute(query):
        try:
            rules.append(parse(row))
        except RuleError as exc:
            problems[row.id] = str(exc)
    return rules, problems
