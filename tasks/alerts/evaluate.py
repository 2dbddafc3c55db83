"""Rules into firings: per rule and target, a change (fire, or clear after a firing) waits
in `alert_state` until the rule's group window (`groupSeconds`) has passed since the
rule's oldest waiting change; then all of the rule's waiting changes of one kind go out
as one `alert_events` row (the targets listed in its detail when there are several),
with `alert_rules.last_fired_at` updated and one outbox notification per channel, in one
transaction. A target fires again only `cooldownMinutes` after its last firing: a
flapping route gives at most one firing (and its recovery) per cooldown. `evaluate` says
when the next waiting group comes due (`next_group_at`), so that the job can run again
then rather than at its next tick. The state of a target no longer seen (a route or
certificate deleted, a certificate renewed past an expiry threshold) is deleted: such a
target cannot come back under the same key."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.schema import alert_events, alert_rules, alert_state
from db.sql import new_id

from . import outbox, rules
from .observe import OBSERVERS, RECOVERY_MESSAGES, Observation
from .rules import Rule

log = logging.getLogger("proxyos.alerts")

FIRE, CLEAR = "fire", "clear"
_SHOWN = 10  # targets named in a grouped message


def nothing_to_evaluate(engine: Engine) -> str | None:
    """The read-only look: None when an enabled rule of the workers' types exists."""
    with engine.connect() as conn:
        if conn.execute(sa.select(alert_rules.c.id).where(alert_rules.c.type.in_(list(rules.TYPES)),
                                                          alert_rules.c.enabled == 1).limit(1)).first() is None:
            return "no enabled alert rule of the workers' types"
    return None


def _wanted(rule: Rule, obs: Observation, state, now: int) -> str | None:
    firing = bool(state and state.firing)
    if obs.bad and not firing:
        fired_at = state.fired_at if state else None
        if fired_at is None or now - fired_at >= rule.config["cooldownMinutes"] * 60:
            return FIRE
        return None  # in the cooldown: fires once it has passed, if still bad
    if obs.good and firing:
        return CLEAR
    return None


def _plan(conn: Connection, rule: Rule, now: int) -> tuple[list[dict], dict, list[str]]:
    """The state rows to write (only those that change), each target's row as it will be,
    and the targets whose state rows are left over (no longer observed)."""
    states = {r.target: r for r in conn.execute(sa.select(alert_state).where(alert_state.c.rule_id == rule.id))}
    writes, after = [], {}
    for obs in OBSERVERS[rule.type](conn, rule, now):
        state = states.get(obs.target)
        pending = _wanted(rule, obs, state, now)
        recovery = RECOVERY_MESSAGES.get(rule.type, "").format(obs.label)
        row = {
            "rule_id": rule.id, "target": obs.target, "route_id": obs.route_id,
            "firing": state.firing if state else 0, "fired_at": state.fired_at if state else None,
            "pending": pending,
            "pending_since": (state.pending_since if state and state.pending == pending else now) if pending else None,
            "pending_message": (obs.message if pending == FIRE else recovery) if pending else None,
            "pending_detail": json.dumps({**obs.detail, "name": obs.label}) if pending else None,
            "updated_at": now,
        }
        after[obs.target] = row
        if state is None and pending is None:
            continue
        if state is None or any(getattr(state, k) != row[k] for k in ("pending", "pending_since", "pending_message")):
            writes.append(row)
    return writes, after, [target for target in states if target not in after]


def _fired_at_iso(now: int) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # as JavaScript's toISOString


def _event(rule: Rule, kind: str, items: list[dict], now: int) -> tuple[str | None, str, dict]:
    """route_id, message and detail of one event for `items` (one or a group)."""
    if len(items) == 1:
        item = items[0]
        return item["route_id"], item["pending_message"], json.loads(item["pending_detail"])
    names = [json.loads(i["pending_detail"]).get("name") for i in items]
    shown = ", ".join(str(n) for n in names[:_SHOWN])
    if len(names) > _SHOWN:
        shown += f" and {len(names) - _SHOWN} more"
    what = {"route_unhealthy": "routes", "stream_unhealthy": "streams"}.get(rule.type, "certificates")
    verb = "recovered" if kind == CLEAR else {"route_unhealthy": "unhealthy", "stream_unhealthy": "unhealthy",
                                              "cert_renewal_failed": "failing to renew"}.get(rule.type, "expiring")
    message = f"{len(items)} {what} {verb}: {shown}"
    return None, message, {"count": len(items), "targets": [json.loads(i["pending_detail"]) for i in items]}


def _emit(conn: Connection, rule: Rule, kind: str, items: list[dict], now: int) -> dict:
    """Write the event, the rule's last_fired_at, the targets' state and the outbox, on `conn`."""
    notified = kind == FIRE or rule.config.get("recovery", False)
    route_id, message, detail = _event(rule, kind, items, now)
    for item in items:
        item.update(pending=None, pending_since=None, pending_message=None, pending_detail=None)
        if kind == FIRE:
            item.update(firing=1, fired_at=now)
        else:
            item.update(firing=0)
    if not notified:  # a certificate's failure that cleared: nothing to say
        return {"events": 0, "notifications": 0}
    event_id = new_id()
    conn.execute(alert_events.insert().values(id=event_id, rule_id=rule.id, route_id=route_id, message=message,
                                              detail=json.dumps(detail), fired_at=now))
    conn.execute(alert_rules.update().where(alert_rules.c.id == rule.id).values(last_fired_at=now))
    body = json.dumps({"source": "proxyos", "event": "alert.fired" if kind == FIRE else "alert.resolved",
                       "rule": rule.name, "message": message, "detail": detail, "firedAt": _fired_at_iso(now)})
    sent = outbox.add(conn, event_id, body, now)
    log.info("alert %s: %s", rule.name, message)
    return {"events": 1, "notifications": len(sent)}


def _write(conn: Connection, rows: list[dict]) -> None:
    for row in rows:
        key = (alert_state.c.rule_id == row["rule_id"], alert_state.c.target == row["target"])
        if conn.execute(alert_state.update().where(*key).values(row)).rowcount == 0:
            conn.execute(alert_state.insert().values(row))


def evaluate_rule(engine: Engine, rule: Rule, now: int) -> tuple[dict, int | None]:
    """The rule's events and notifications, and when its next waiting group comes due."""
    with write_transaction(engine) as conn:
        writes, after, gone = _plan(conn, rule, now)
        totals = {"events": 0, "notifications": 0}
        group = rule.config["groupSeconds"]
        next_group_at = None
        for kind in (FIRE, CLEAR):
            items = [row for row in after.values() if row["pending"] == kind]
            if not items:
                continue
            due_at = min(i["pending_since"] for i in items) + group
            if due_at <= now:
                for key, value in _emit(conn, rule, kind, items, now).items():
                    totals[key] += value
                writes = [w for w in writes if w["target"] not in {i["target"] for i in items}] + items
            else:
                next_group_at = min(due_at, next_group_at or due_at)
        _write(conn, writes)
        if gone:
            conn.execute(alert_state.delete().where(alert_state.c.rule_id == rule.id, alert_state.c.target.in_(gone)))
    return totals, next_group_at


def evaluate(engine: Engine, clock: Callable[[], float] = time.time) -> dict:
    """Evaluate every enabled rule of the workers' types; a bad rule is reported in
    `problems` and skipped, the others go on."""
    now = int(clock())
    with engine.connect() as conn:
        active, problems = rules.load(conn)
    summary = {"rules": len(active), "events": 0, "notifications": 0}
    waits = []
    for rule in active:
        totals, next_group_at = evaluate_rule(engine, rule, now)
        for key, value in totals.items():
            summary[key] += value
        if next_group_at is not None:
            waits.append(next_group_at)
    if waits:
        summary["next_group_at"] = min(waits)
    if problems:
        summary["problems"] = problems
        for problem in problems.values():
            log.warning("%s", problem)
    return summary
