"""Alerts: `alerts-evaluate` turns the workers' rules into alert_events and outbox
notifications; `notify` delivers the outbox (see docs/alerts.md).

Both run when there is news rather than waiting for their tick: a health check that
changes a state nudges `alerts-evaluate`, an evaluation that wrote notifications enqueues
`notify`, and each nudges itself for the time its next group window closes or its next
retry is due. Their ticks (every 30 s) are the safety net for a nudge lost with a killed
consumer, and they bring the time-based rules (hold, cooldown, certificate expiry)."""

from __future__ import annotations

from ..registry import Job, JobContext, render_pairs
from ..settings import alerts as alerts_settings

EVERY = 30.0  # the safety net's period: news comes as nudges (see above)


def _run_evaluate(ctx: JobContext, _options: dict) -> dict:
    from tasks.alerts.evaluate import evaluate
    from tasks.outcome import NothingToDo

    summary = evaluate(ctx.engine, clock=ctx.clock)
    if summary["notifications"]:
        ctx.enqueue("notify")  # at once, not at notify's next tick
    if "next_group_at" in summary:
        ctx.nudge("alerts-evaluate", delay=max(summary["next_group_at"] - ctx.clock(), 1.0))
    if not summary["events"] and not summary.get("problems"):
        raise NothingToDo("no rule fired or cleared", summary)
    return summary


def _nothing_to_evaluate(ctx: JobContext) -> str | None:
    from tasks.alerts.evaluate import nothing_to_evaluate

    return nothing_to_evaluate(ctx.engine)


def _run_notify(ctx: JobContext, _options: dict) -> dict:
    from tasks.alerts.outbox import deliver_due
    from tasks.outcome import NothingToDo

    summary = deliver_due(ctx.engine, ctx.settings.area(alerts_settings.load), clock=ctx.clock)
    if "next_attempt_in" in summary:
        ctx.nudge("notify", delay=max(summary["next_attempt_in"], 1.0))
    if not summary["due"]:
        raise NothingToDo("no notification is due", summary)
    return summary


def _nothing_due(ctx: JobContext) -> str | None:
    from tasks.alerts.outbox import nothing_due

    return nothing_due(ctx.engine)


JOBS = [
    Job(
        name="alerts-evaluate",
        help="Evaluate the workers' alert rules (route/stream health, certificate renewal and expiry) "
        "into alert_events rows and notifications to deliver.",
        run=_run_evaluate,
        nothing_to_do=_nothing_to_evaluate,
        every=EVERY,
        example="proxyos-worker run-once alerts-evaluate",
        check_settings=alerts_settings.load,
        render=render_pairs,
        feeds=("notify",),
    ),
    Job(
        name="notify",
        help="Deliver due notifications to the webhook and SMTP settings of system_settings, "
        "retrying failed ones with exponential back-off for up to 24 h.",
        run=_run_notify,
        nothing_to_do=_nothing_due,
        every=EVERY,
        example="proxyos-worker run-once notify",
        check_settings=alerts_settings.load,
        render=render_pairs,
    ),
]
