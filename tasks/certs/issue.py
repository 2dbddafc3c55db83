"""Issuing (or renewing) one certificate, end to end: lease, provider, order, files,
rows, audit, issuance log, deploy hook, clean-up. Every failure is recorded on the row
with a message a person can act on and a next attempt time; nothing raises past here
except programming errors in the caller."""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.schema import (
    acme_accounts,
    audit_log,
    cert_issuance_log,
    certificates,
    dns_providers,
    routes,
)
from db.sql import new_id
from tasks.redaction import redact

from . import policy, providers
from .account import AcmeSession, open_session
from .ari import cert_id as ari_cert_id
from .credentials import load_credentials
from .errors import CertError, ConfigurationError, HeldBack, LeaseLost
from .files import write_certificate
from .hook import run_deploy_hook
from .isolation import number, reason, system_fault
from .keys import leaf_of, validity
from .lease import Lease, new_owner
from .order import OrderFlow
from .ownership import is_owned, not_ours, owned
from .propagation import Checker
from .records import DbJournal, clean_leftovers
from .saved_order import OrderStore
from .settings import CertSettings
from .sync import cert_names

log = logging.getLogger("proxyos.certs.issue")
MAX_FAILURES = 1000  # backoff is a day long well before this; keeps the arithmetic small


@dataclass
class Outcome:
    cert_id: str
    domain: str
    result: str  # issued | renewed | failed | held | busy | done_elsewhere
    error: str | None = None
    expires_at: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {})}


class Sessions:
    """One ACME session per directory for a whole run, shared by the worker threads."""

    def __init__(self, engine: Engine, settings: CertSettings, clock: Callable[[], float]) -> None:
        self.engine, self.settings, self.clock = engine, settings, clock
        self._lock = threading.Lock()
        self._sessions: dict[str, AcmeSession | CertError] = {}

    def problems(self) -> list[str]:
        """Why an ACME account could not be used this run (one line per directory)."""
        with self._lock:
            return [str(found) for found in self._sessions.values() if isinstance(found, CertError)]

    def get(self, directory_url: str) -> AcmeSession:
        with self._lock:
            if directory_url not in self._sessions:
                try:
                    self._sessions[directory_url] = open_session(
                        self.engine, self.settings, directory_url, int(self.clock())
                    )
                except CertError as exc:
                    log.warning("ACME account for %s unavailable: %s", directory_url, exc)
                    self._sessions[directory_url] = exc
            found = self._sessions[directory_url]
        if isinstance(found, CertError):
            raise CertError(str(found))
        return found


def build_provider(conn, provider_id: str | None, settings: CertSettings, route_domain: str):
    if not provider_id:
        raise ConfigurationError(
            f"route {route_domain} uses tls_mode dns but has no DNS provider (tls_dns_provider_id)"
        )
    row = conn.execute(sa.select(dns_providers).where(dns_providers.c.id == provider_id)).first()
    if row is None:
        raise ConfigurationError(
            f"DNS provider {provider_id} of route {route_domain} does not exist"
        )
    if not row.enabled:
        raise ConfigurationError(f"DNS provider {row.name!r} of route {route_domain} is disabled")
    if not isinstance(row.type, str):
        raise ConfigurationError(f"DNS provider {row.name!r} of route {route_domain} has no type (not text)")
    cls = providers.get(row.type)
    credentials = load_credentials(row.credentials, settings.secret, row.name, cls.public)
    try:
        return cls(credentials, name=str(row.name), api_url=settings.api_urls.get(row.type))
    except CertError:
        raise
    except Exception as exc:  # odd values (a list where text belongs, ...); never its words: they may hold a secret
        if system_fault(exc):
            raise
        raise ConfigurationError(
            f"credentials of DNS provider {row.name!r} are unusable ({type(exc).__name__}): "
            "re-enter them in the dashboard"
        ) from None


def issue_certificate(
    engine: Engine,
    settings: CertSettings,
    sessions: Sessions,
    cert_id: str,
    *,
    clock: Callable[[], float] = time.time,
    owner: str | None = None,
    checker_factory: Callable[[], Checker] | None = None,
    still_due: Callable[[object], bool] | None = None,
) -> Outcome:
    """Issue or renew `cert_id` now. `still_due` (the sweep's rule) is checked again once
    the lease is ours: another worker may have finished the job in the meantime."""
    lease = Lease(engine, cert_id, owner or new_owner(), settings.lease_seconds, clock)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(certificates, routes.c.tls_mode)
            .outerjoin(routes, routes.c.id == certificates.c.route_id)
            .where(certificates.c.id == cert_id)
        ).first()
    if row is None:
        return Outcome(cert_id, "?", "failed", f"certificate {cert_id} does not exist")
    if not is_owned(row.source, row.tls_mode):
        return Outcome(cert_id, row.domain, "failed", not_ours(row.domain, row.source, row.tls_mode))
    if not lease.acquire():
        return Outcome(cert_id, row.domain, "busy", "another worker is issuing this certificate")
    try:
        if still_due is not None:
            with engine.connect() as conn:
                fresh = conn.execute(sa.select(certificates).where(certificates.c.id == cert_id)).first()
            if not still_due(fresh):
                return Outcome(cert_id, row.domain, "done_elsewhere")
        return _issue_leased(engine, settings, sessions, lease, clock, checker_factory)
    finally:
        lease.release()


def _issue_leased(engine, settings, sessions, lease: Lease, clock, checker_factory) -> Outcome:
    cert_id = lease.cert_id
    with engine.connect() as conn:
        row = conn.execute(sa.select(certificates).where(certificates.c.id == cert_id)).first()
        route = (
            conn.execute(sa.select(routes).where(routes.c.id == row.route_id)).first()
            if row.route_id
            else None
        )
    renewal = row.issued_at is not None
    names: list[str] = []
    try:
        names = cert_names(row)
        if route is None:
            raise ConfigurationError(
                f"certificate {row.domain} has no route; it cannot be issued through DNS-01"
            )
        if not (route.enabled and route.tls_mode == "dns"):
            raise ConfigurationError(
                f"route {route.domain} no longer uses tls_mode dns; not issuing"
            )
        provider_cache: dict = {}

        def provider_for(provider_id: str):
            if provider_id not in provider_cache:
                with engine.connect() as conn:
                    provider_cache[provider_id] = build_provider(
                        conn, provider_id, settings, route.domain
                    )
            return provider_cache[provider_id]

        clean_leftovers(engine, cert_id, provider_for)
        provider = provider_for(route.tls_dns_provider_id)
        now = clock()
        session = sessions.get(settings.directory_for(route.tls_mode))
        orders = OrderStore(
            engine, cert_id, session.account_id, settings.secret, settings.cert_dir, clock
        )
        saved = orders.load()
        if not renewal and saved is None:  # a saved order was checked when it was placed
            _check_rate_limit(engine, settings, names[0], now)
        if renewal:
            _set(engine, cert_id, status="renewing", updated_at=int(now))
        checker = (
            checker_factory()
            if checker_factory
            else Checker(settings.resolvers, settings.nameserver_port)
        )
        ca = session.ca()
        flow = OrderFlow(
            ca,
            provider,
            checker,
            DbJournal(engine, cert_id, route.tls_dns_provider_id, clock),
            orders,
            key_type=settings.key_type,
            propagation_timeout=settings.propagation_timeout,
            order_timeout=settings.order_timeout,
            heartbeat=lease.extend,
        )
        replaces = row.ari_cert_id if (renewal and ca.offers_ari) else None
        result = flow.obtain(names, replaces=replaces, saved=saved)
        lease.extend(force=True)  # still ours: nobody else is writing these files
    except HeldBack as exc:
        return _held(engine, row, str(exc), exc.retry_at, clock)
    except LeaseLost as exc:  # the row is someone else's now: write nothing to it
        log.warning("certificate %s: %s", row.domain, exc)
        return Outcome(row.id, row.domain, "busy", str(exc))
    except CertError as exc:
        return _failed(engine, row, str(exc), exc.retry_at, clock)
    except Exception as exc:  # a bug, an unexpected library error, odd data: record it, go on
        if system_fault(exc):
            raise
        log.debug("certificate %s: %s", row.domain, redact(traceback.format_exc()))
        return _failed(engine, row, f"internal error: {type(exc).__name__}: {exc}", None, clock)
    try:
        return _store(engine, settings, session.account_id, ca.offers_ari, orders, row, names, result, renewal, clock)
    except OSError as exc:
        where = settings.cert_dir / names[0].replace("*", "_")
        return _failed(engine, row, f"the CA issued the certificate but writing it to {where} failed: "
                       f"{exc.strerror or exc}", None, clock)


def _set(engine: Engine, cert_id: str, **values) -> None:
    with write_transaction(engine) as conn:
        conn.execute(certificates.update().where(certificates.c.id == cert_id, owned()).values(**values))


def _check_rate_limit(engine: Engine, settings: CertSettings, domain: str, now: float) -> None:
    registered = policy.registered_domain(domain)
    with engine.connect() as conn:
        count, frees_at = policy.issued_last_week(conn, registered, settings.ca_label, now)
    if count >= settings.weekly_limit:
        raise HeldBack(
            f"held back: {count} certificates for {registered} were issued in the last 7 days "
            f"(limit {settings.weekly_limit} per registered domain per week); next attempt when "
            "the oldest leaves the window",
            retry_at=frees_at,
        )


def _audit(conn, action: str, row, now: int, detail: dict) -> None:
    conn.execute(
        audit_log.insert().values(
            id=new_id(),
            action=action,
            resource_type="certificate",
            resource_id=row.id,
            resource_name=row.domain,
            actor="worker",
            detail=json.dumps(detail, sort_keys=True),
            created_at=now,
        )
    )


def _held(engine, row, reason: str, retry_at: float | None, clock) -> Outcome:
    now = int(clock())
    _set(
        engine,
        row.id,
        last_error=redact(reason),
        next_attempt_at=int(retry_at or now + policy.DAY),
        updated_at=now,
    )
    log.warning("certificate %s %s", row.domain, redact(reason))
    return Outcome(row.id, row.domain, "held", redact(reason))


def record_failure(engine: Engine, row, message: str, clock: Callable[[], float]) -> Outcome:
    """Record `message` as the failure of `row` (a certificate row), as any other failure
    is; if even that cannot be written for this row, say so in the log and go on."""
    try:
        return _failed(engine, row, message, None, clock)
    except Exception as exc:
        if system_fault(exc):
            raise
        log.error("certificate %s: %s; recording it failed too: %s", row.domain, redact(message), reason(exc))
        return Outcome(row.id, row.domain, "failed", redact(message)[:1000])


def _failed(engine, row, message: str, retry_at: float | None, clock) -> Outcome:
    now = int(clock())
    message = redact(message)[:1000]
    failures = min(int(number(row.failures) or 0), MAX_FAILURES) + 1  # text in the column counts as 0
    next_attempt = now + policy.backoff_seconds(failures)
    if retry_at:
        next_attempt = max(next_attempt, int(retry_at))
    expires_at = number(row.expires_at)
    status = "expired" if expires_at and expires_at <= now else "error"
    with write_transaction(engine) as conn:
        conn.execute(
            certificates.update()
            .where(certificates.c.id == row.id, owned())
            .values(
                status=status,
                last_error=message,
                failures=failures,
                next_attempt_at=next_attempt,
                updated_at=now,
            )
        )
        _audit(
            conn,
            "cert.failed",
            row,
            now,
            {"error": message, "failures": failures, "next_attempt_at": next_attempt},
        )
    log.error(
        "certificate %s failed (attempt %d, next %s): %s",
        row.domain,
        failures,
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(next_attempt)),
        message,
    )
    return Outcome(row.id, row.domain, "failed", message)


def _store(
    engine,
    settings: CertSettings,
    account_id: str,
    offers_ari: bool,
    orders: OrderStore,
    row,
    names,
    result,
    renewal,
    clock,
) -> Outcome:
    leaf = leaf_of(result.fullchain_pem)
    issued_at, expires_at = validity(leaf)
    chain_path, key_path = write_certificate(
        settings.cert_dir, names[0], result.fullchain_pem, result.key_pem
    )
    now = int(clock())
    try:
        ident = ari_cert_id(leaf)
    except Exception:  # noqa: BLE001 - a CA without AKI: no ARI for this one
        ident = None
    action = "cert.renewed" if renewal else "cert.issued"
    with write_transaction(engine) as conn:
        conn.execute(
            certificates.update()
            .where(certificates.c.id == row.id, owned())
            .values(
                status="active",
                issued_at=issued_at,
                expires_at=expires_at,
                last_renewed_at=now,
                last_error=None,
                failures=0,
                next_attempt_at=None,
                renew_at=policy.renew_at(issued_at, expires_at),
                ari_cert_id=ident,
                ari_next_check_at=now if offers_ari else None,
                updated_at=now,
            )
        )
        conn.execute(
            cert_issuance_log.insert().values(
                id=new_id(),
                domain=names[0],
                registered_domain=policy.registered_domain(names[0]),
                provider=settings.ca_label,
                method="dns01",
                issued_at=now,
                expires_at=expires_at,
            )
        )
        conn.execute(
            acme_accounts.update()
            .where(acme_accounts.c.id == account_id)
            .values(
                certs_count=acme_accounts.c.certs_count + 1,
            )
        )
        _audit(
            conn,
            action,
            row,
            now,
            {
                "names": names,
                "expires_at": expires_at,
                "fullchain": str(chain_path),
                "replaced": row.ari_cert_id if renewal else None,
            },
        )
        orders.forget_in(conn)  # the order is done only when its certificate is stored
    orders.drop_key_file()
    log.info(
        "certificate %s %s, valid until %s",
        names[0],
        action.split(".")[1],
        time.strftime("%Y-%m-%d", time.gmtime(expires_at)),
    )
    outcome = Outcome(
        row.id,
        row.domain,
        "renewed" if renewal else "issued",
        None,
        expires_at,
        {k: round(v, 3) for k, v in result.timings.items()},
    )
    if settings.deploy_hook:
        problem = run_deploy_hook(
            settings.deploy_hook, row.id, names[0], names, chain_path, key_path
        )
        if problem:
            with write_transaction(engine) as conn:
                conn.execute(
                    certificates.update()
                    .where(certificates.c.id == row.id, owned())
                    .values(last_error=problem, updated_at=now)
                )
                _audit(conn, "cert.deploy_failed", row, now, {"error": problem})
            log.error("certificate %s: %s", names[0], problem)
            outcome.error = problem
    if settings.caddy_admin_url:
        problem = _deploy_to_caddy(engine, settings, row, clock)
        if problem:
            outcome.error = f"{outcome.error}; {problem}" if outcome.error else problem
    return outcome


def _deploy_to_caddy(engine: Engine, settings: CertSettings, row, clock) -> str | None:
    """The certificate is stored and stays active whatever happens here; a failure is
    recorded in `cert_deployments` and retried by the `caddy-sync` job."""
    from .caddy_deploy import deploy_issued

    try:
        return deploy_issued(engine, settings, row.id, clock=clock)
    except Exception as exc:
        if system_fault(exc):
            raise
        log.error("certificate %s: loading it into Caddy failed: %s", row.domain, reason(exc))
        return f"not loaded into Caddy yet: internal error: {reason(exc)}"
