"""Certificates through ACME DNS-01: the hourly `certs` sweep and the on-demand `issue`."""

from __future__ import annotations

from collections.abc import Mapping

from tasks.certs.errors import CertError
from tasks.outcome import NothingToDo, Skipped

from ..registry import Job, JobContext, Option
from ..settings import certs as certs_settings

HOUR = 3600.0
MINUTE = 60.0


def _run_certs(ctx: JobContext, _options: dict) -> dict:
    from tasks.certs.sweep import run_sweep  # imported when used: keeps the CLI quick

    settings = ctx.settings.area(certs_settings.load)
    summary = run_sweep(ctx.engine, settings, clock=ctx.clock)
    if summary.get("due") or summary.get("expired"):
        ctx.nudge("alerts-evaluate")  # a renewal failed, one that failed is fixed, or one expired
    return summary


def _run_issue(ctx: JobContext, options: dict) -> dict:
    from tasks.certs.issue import Sessions, issue_certificate
    from tasks.certs.request import resolve
    from tasks.certs.sync import mirror_group

    settings = ctx.settings.area(certs_settings.load)
    if not options.get("cert") and not options.get("domain"):
        raise Skipped("give --cert ID or --domain NAME")
    cert_id, group = resolve(ctx.engine, int(ctx.clock()), options.get("cert"), options.get("domain"))
    requested_at = options.get("requested_at")  # set for requests that went through the queue

    def not_served_since_requested(row) -> bool:
        """Idempotent requests: one issued after this request was made already served it
        (two clicks on "renew now" order one certificate)."""
        return not (row.status == "active" and (row.last_renewed_at or 0) >= int(requested_at))

    outcome = issue_certificate(ctx.engine, settings, Sessions(ctx.engine, settings, ctx.clock), cert_id,
                                clock=ctx.clock, still_due=not_served_since_requested if requested_at else None)
    if group is not None:  # the group's other rows show the result
        mirror_group(ctx.engine, group, int(ctx.clock()))
    if outcome.result != "busy":
        ctx.nudge("alerts-evaluate")  # a renewal failed (or one that failed is fixed)
    if outcome.result in ("failed", "busy"):
        raise CertError(f"{outcome.domain}: {outcome.error}")
    return outcome.as_dict()


def _run_caddy_sync(ctx: JobContext, _options: dict) -> dict:
    from tasks.certs.caddy_admin import CaddyError
    from tasks.certs.caddy_deploy import sync_caddy

    settings = ctx.settings.area(certs_settings.load)
    if not settings.caddy_admin_url:
        raise NothingToDo(_NO_CADDY)
    try:
        summary = sync_caddy(ctx.engine, settings, clock=ctx.clock)
    except CaddyError as exc:
        raise CertError(str(exc)) from None
    if not any(summary.get(key) for key in ("loaded", "removed", "waiting", "failed", "unreadable")):
        raise NothingToDo("Caddy holds every certificate the workers deploy", summary)  # a tick in step: no row
    return summary


_NO_CADDY = "PROXYOS_CADDY_ADMIN_URL is not set: no Caddy to load certificates into"


def _no_caddy(ctx: JobContext) -> str | None:
    return None if ctx.settings.area(certs_settings.load).caddy_admin_url else _NO_CADDY


def _render_caddy(summary: Mapping) -> str:
    lines = [f"  Caddy ({summary.get('caddy')}): {summary.get('in_caddy', 0)} of the workers' certificates loaded"]
    for key in ("loaded", "waiting"):
        if summary.get(key):
            lines.append(f"  {key}: {', '.join(summary[key])}")
    if summary.get("removed"):
        lines.append(f"  removed: {summary['removed']} entries of certificates the workers no longer deploy")
    for domain, error in {**summary.get("failed", {}), **summary.get("unreadable", {})}.items():
        lines.append(f"  {domain}: {error}")
    return "\n".join(lines)


def _status(ctx: JobContext) -> dict:
    from tasks.certs.listing import summary

    return summary(ctx.engine, ctx.clock())


def _render(summary: Mapping) -> str:
    lines = []
    for item in summary.get("certificates", []):
        line = f"  {item.get('domain')}: {item.get('result')}"
        if item.get("error"):
            line += f" - {item['error']}"
        lines.append(line)
    for key in ("created", "expired", "due", "issued", "renewed", "failed", "held", "busy", "ari_checked"):
        if summary.get(key):
            lines.append(f"  {key}: {summary[key]}")
    for problem in summary.get("account_problems", []) + summary.get("route_problems", []):
        lines.append(f"  problem: {problem}")
    if "result" in summary:
        lines.append(f"  {summary.get('domain')}: {summary['result']}"
                     + (f", expires {summary['expires_at']}" if summary.get("expires_at") else ""))
    return "\n".join(lines) or "  nothing was due"


JOBS = [
    Job(
        name="certs",
        help="Keep certificates in step with routes (tls_mode dns) and issue, renew or retry "
        "every certificate that is due, several at once.",
        run=_run_certs,
        every=HOUR,
        lease_seconds=120.0,  # renewed every 40 s while a sweep lasts: a killed one blocks the next <= 2 min
        example="proxyos-worker run-once certs",
        status=_status,
        check_settings=certs_settings.load,
        render=_render,
    ),
    Job(
        name="caddy-sync",
        help="Load the workers' certificates into Caddy (PROXYOS_CADDY_ADMIN_URL) where they are "
        "missing or stale, by fingerprint; writes nothing when Caddy is in step.",
        run=_run_caddy_sync,
        nothing_to_do=_no_caddy,
        every=MINUTE,
        example="proxyos-worker run-once caddy-sync",
        check_settings=certs_settings.load,
        render=_render_caddy,
    ),
    Job(
        name="issue",
        help="Issue or renew one certificate now (ignores its renewal time and back-off).",
        run=_run_issue,
        options=(
            Option("--cert", "the certificate's id", metavar="ID"),
            Option("--domain", "the certificate's domain", metavar="NAME"),
        ),
        exclusive=False,
        example="proxyos-worker run-once issue --domain www.example.com",
        check_settings=certs_settings.load,
        render=_render,
    ),
]
