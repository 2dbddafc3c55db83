"""The flap-free state machine, as a pure function.

A route's (or stream's) status moves to a *worse* level only after `fall` consecutive
results at that level or worse, and to a *better* level only after `rise` consecutive
results at that level or better. Levels, best first: healthy, degraded, unhealthy. A new
target starts `unknown`: it becomes healthy or degraded after `rise` results at that
level or better, unhealthy after `fall` unhealthy results. The latest results are kept as
a short string (`recent`, oldest first, one letter each: H, D, U).

A transition is *pending* while the latest result disagrees with the status: a streak
toward `fall` or `rise` has begun but not reached it. The schedule re-checks such a target
sooner (`HealthSettings.fast_interval`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .verdict import DEGRADED, HEALTHY, UNHEALTHY

UNKNOWN = "unknown"
LETTER = {HEALTHY: "H", DEGRADED: "D", UNHEALTHY: "U"}
RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


@dataclass(frozen=True)
class State:
    status: str = UNKNOWN
    status_since: int | None = None
    recent: str = ""
    consecutive_successes: int = 0  # healthy or degraded results in a row
    consecutive_failures: int = 0  # unhealthy results in a row


@dataclass(frozen=True)
class Change:
    from_status: str
    to_status: str
    reason: str


def advance(
    state: State, result: str, now: int, rise: int, fall: int
) -> tuple[State, Change | None]:
    """The state after one more result (`healthy`, `degraded` or `unhealthy`)."""
    recent = (state.recent + LETTER[result])[-max(rise, fall, 1) :]
    failed = result == UNHEALTHY
    new = replace(
        state,
        recent=recent,
        consecutive_successes=0 if failed else state.consecutive_successes + 1,
        consecutive_failures=state.consecutive_failures + 1 if failed else 0,
    )
    target = _target(state.status, [RANK[_LEVEL[letter]] for letter in recent], rise, fall)
    if target is None or target == state.status:
        return new, None
    count = (
        fall
        if target == UNHEALTHY or (state.status != UNKNOWN and RANK[target] > RANK[state.status])
        else rise
    )
    reason = f"{count} consecutive checks {_words(target, state.status)}"
    return replace(new, status=target, status_since=now), Change(state.status, target, reason)


def pending(state: State) -> bool:
    """Whether a transition is under way after the latest result (the last of `recent`):
    it is at another level than the status, so more like it would change the status. A
    target still `unknown` is pending while every result so far is on one side (healthy
    or degraded, or unhealthy); once they disagree it is checked at its regular interval
    until it is decided, so that a target flapping from the start is not re-checked fast
    for ever."""
    if not state.recent:
        return False
    latest = _LEVEL[state.recent[-1]]
    if state.status == UNKNOWN:
        streak = (
            state.consecutive_failures if latest == UNHEALTHY else state.consecutive_successes
        )
        return streak >= len(state.recent)
    return latest != state.status


_LEVEL = {letter: status for status, letter in LETTER.items()}
_NAMES = [HEALTHY, DEGRADED, UNHEALTHY]


def _target(current: str, ranks: list[int], rise: int, fall: int) -> str | None:
    last_fall, last_rise = ranks[-fall:], ranks[-rise:]
    if current == UNKNOWN:
        if len(last_rise) == rise and max(last_rise) < RANK[UNHEALTHY]:
            return _NAMES[max(last_rise)]
        if len(last_fall) == fall and min(last_fall) == RANK[UNHEALTHY]:
            return UNHEALTHY
        return None
    level = RANK[current]
    if len(last_fall) == fall and min(last_fall) > level:  # every one worse: move down
        return _NAMES[min(last_fall)]
    if len(last_rise) == rise and max(last_rise) < level:  # every one better: move up
        return _NAMES[max(last_rise)]
    return None


def _words(target: str, current: str) -> str:
    if target != DEGRADED:
        return target
    return "degraded or worse" if current == HEALTHY else "degraded or better"
