"""Certificates through ACME DNS-01: the hourly `certs` sweep and the on-demand `issue`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks.certs import providers
from tasks.certs.errors import CertError
from tasks.certs.keys import KEY_TYPES
from tasks.certs.settings import LETSENCRYPT, CertSettings
from tasks.outcome import NothingToDo, Skipped
from tasks.redaction import remember

from ..config import ConfigError, env_choice, env_float, env_int, env_str
from ..registry import Job, JobContext, Option

HOUR = 3600.0
MINUTE = 60.0


def _resolvers(env: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    raw = env_str(env, "PROXYOS_DNS_RESOLVERS")
    if not raw:
        return ()
    found = []
    for item in raw.replace(",", " ").split():
        if item.startswith("["):  # [IPv6]:port
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:
            host, port = item, ""
        try:
            found.append((host, int(port) if port else 53))
        except ValueError:
            raise ConfigError(
                "PROXYOS_DNS_RESOLVERS", raw, "addresses like 1.1.1.1, 127.0.0.1:5353 or [::1]:53"
            ) from None
    ports = {p for _, p in found}
    if len(ports) > 1:
        raise ConfigError("PROXYOS_DNS_RESOLVERS", raw, "resolvers that share one port")
    return tuple(found)


def cert_settings(env: Mapping[str, str]) -> CertSettings:
    """Read and check every certificate setting (ConfigError on the first bad one)."""
    directory = env_str(env, "PROXYOS_ACME_DIRECTORY", LETSENCRYPT)
    if not directory.startswith(("https://", "http://")):
        raise ConfigError("PROXYOS_ACME_DIRECTORY", directory, "an https:// URL of an ACME directory")
    bundle = env_str(env, "PROXYOS_ACME_CA_BUNDLE")
    if bundle and not Path(bundle).is_file():
        raise ConfigError("PROXYOS_ACME_CA_BUNDLE", bundle, "the path of a PEM file that exists")
    kid, hmac_key = env_str(env, "PROXYOS_ACME_EAB_KID"), env_str(env, "PROXYOS_ACME_EAB_HMAC_KEY")
    remember(hmac_key)
    if bool(kid) != bool(hmac_key):
        raise ConfigError("PROXYOS_ACME_EAB_KID", kid or "", "set together with PROXYOS_ACME_EAB_HMAC_KEY")
    secret = env_str(env, "PROXYOS_SECRET")
    remember(secret)
    api_urls = {}
    for kind in providers.types():
        url = env_str(env, f"PROXYOS_DNS_API_URL_{kind.upper()}")
        if url:
            api_urls[kind] = url
    caddy = env_str(env, "PROXYOS_CADDY_ADMIN_URL")
    if caddy:
        from tasks.certs.caddy_admin import parse_admin_url

        try:
            parse_admin_url(caddy)
        except ValueError as exc:
            raise ConfigError("PROXYOS_CADDY_ADMIN_URL", caddy, str(exc)) from None
    return CertSettings(
        caddy_admin_url=caddy,
        directory=directory,
        email=env_str(env, "PROXYOS_ACME_EMAIL", "") or "",
        ca_bundle=bundle,
        eab_kid=kid,
        eab_hmac_key=hmac_key,
        cert_dir=Path(env_str(env, "PROXYOS_CERT_DIR", "./data/certs")),
        resolvers=_resolvers(env),
        nameserver_port=env_int(env, "PROXYOS_DNS_NAMESERVER_PORT", 53, minimum=1, maximum=65_535),
        key_type=env_choice(env, "PROXYOS_CERT_KEY_TYPE", "ecdsa", KEY_TYPES),
        deploy_hook=env_str(env, "PROXYOS_CERT_DEPLOY_HOOK"),
        secret=secret,
        propagation_timeout=env_float(env, "PROXYOS_DNS_PROPAGATION_TIMEOUT", 300.0, minimum=1.0, maximum=86_400),
        order_timeout=env_float(env, "PROXYOS_ACME_ORDER_TIMEOUT", 180.0, minimum=1.0, maximum=86_400),
        concurrency=env_int(env, "PROXYOS_CERT_CONCURRENCY", 4, minimum=1, maximum=256),
        lease_seconds=env_float(env, "PROXYOS_CERT_LEASE_SECONDS", 900.0, minimum=5.0, maximum=86_400),
        weekly_limit=env_int(env, "PROXYOS_CERT_WEEKLY_LIMIT", 50, minimum=1, maximum=100_000),
        api_urls=api_urls,
    )


def _run_certs(ctx: JobContext, _options: dict) -> dict:
    from tasks.certs.sweep import run_sweep  # imported when used: keeps the CLI quick

    settings = cert_settings(ctx.settings.env)
    return run_sweep(ctx.engine, settings, clock=ctx.clock)


def _run_issue(ctx: JobContext, options: dict) -> dict:
    from tasks.certs.issue import Sessions, issue_certificate
    from tasks.certs.request import resolve
    from tasks.certs.sync import mirror_group

    settings = cert_settings(ctx.settings.env)
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
    if outcome.result in ("failed", "busy"):
        raise CertError(f"{outcome.domain}: {outcome.error}")
    return outcome.as_dict()


def _run_caddy_sync(ctx: JobContext, _options: dict) -> dict:
    from tasks.certs.caddy_admin import CaddyError
    from tasks.certs.caddy_deploy import sync_caddy

    settings = cert_settings(ctx.settings.env)
    if not settings.caddy_admin_url:
        raise NothingToDo("PROXYOS_CADDY_ADMIN_URL is not set: no Caddy to load certificates into")
    try:
        summary = sync_caddy(ctx.engine, settings, clock=ctx.clock)
    except CaddyError as exc:
        raise CertError(str(exc)) from None
    if not any(summary.get(key) for key in ("loaded", "removed", "waiting", "failed", "unreadable")):
        raise NothingToDo("Caddy holds every certificate the workers deploy", summary)  # a tick in step: no row
    return summary


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
        check_settings=cert_settings,
        render=_render,
    ),
    Job(
        name="caddy-sync",
        help="Load the workers' certificates into Caddy (PROXYOS_CADDY_ADMIN_URL) where they are "
        "missing or stale, by fingerprint; writes nothing when Caddy is in step.",
        run=_run_caddy_sync,
        every=MINUTE,
        example="proxyos-worker run-once caddy-sync",
        check_settings=cert_settings,
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
        check_settings=cert_settings,
        render=_render,
    ),
]
