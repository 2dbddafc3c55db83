"""One upstream's result, and the rules that turn a route's upstream results into one
`health_checks` row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"


@dataclass(frozen=True)
class UpstreamResult:
    label: str
    ok: bool  # reachable and every condition passed
    response_time_ms: int | None = None
    status_code: int | None = None
    body_matched: bool | None = None
    reason: str | None = None  # why it failed, in words a person can act on
    slow: str | None = None  # set when it passed but slower than allowed


@dataclass(frozen=True)
class CheckResult:
    """One check of one route or stream: the row written, and what the state machine sees."""

    kind: str  # "route" or "stream"
    target_id: str
    name: str
    status: str
    started_at: float  # when probing began (epoch seconds)
    error: str | None = None
    status_code: int | None = None
    response_time_ms: int | None = None
    body_matched: bool | None = None
    protocol: str | None = None  # streams
    lateness_ms: int | None = None  # behind its scheduled time; None when run on demand
    ended_at: float | None = None  # when the check ended (None: taken as `started_at`)
    interval: float | None = None  # the target's own interval (seconds between its checks)
    recheck_at: float | None = None  # its fast re-check, should this leave a transition pending
    upstreams: tuple[UpstreamResult, ...] = field(default=(), compare=False)


def combine(results: Sequence[UpstreamResult]) -> tuple[str, str | None]:
    """(status, error): healthy when every upstream passes in time; unhealthy when all
    fail (or there are none); degraded otherwise. The error names each failing or slow
    upstream and why."""
    if not results:
        return UNHEALTHY, "no upstream to check"
    failed = [r for r in results if not r.ok]
    slow = [r for r in results if r.ok and r.slow]
    problems = [f"{r.label}: {r.reason}" for r in failed] + [f"{r.label}: {r.slow}" for r in slow]
    error = "; ".join(problems) or None
    if len(failed) == len(results):
        return UNHEALTHY, error
    if failed or slow:
        return DEGRADED, error
    return HEALTHY, None
