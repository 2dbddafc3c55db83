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
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.leases import Owner
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
from .ca import CertificateAuthority
from .credentials import load_credentials
from .errors import CertError, ConfigurationError, HeldBack, LeaseLost
from .files import write_certificate
from .hook import run_deploy_hook
from .isolation import number, reason, system_fault
from .keys import leaf_of, validity
from .lease import Lease
from .order import OrderFlow, Result
from .ownership import is_owned, not_ours, owned
from .propagation import Checker
from .providers.base import Provider
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
    owner: Owner | None = None,
    checker_factory: Callable[[], Checker] | None = None,
    still_due: Callable[[object], bool] | None = None,
) -> Outcome:
    """Issue or renew `cert_id` now. `still_due` (the sweep's rule) is checked again once
    the lease is ours: another worker may have finished the job in the meantime."""
    lease = Lease(engine, cert_id, owner or Owner.here(), settings.lease_seconds)
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
        return Issuance(engine, settings, sessions, lease, clock, checker_factory).run()
    finally:
        lease.release()


@dataclass(frozen=True)
class Stored:
    """An issued certificate, written to its files."""

    chain_path: Path
    key_path: Path
    issued_at: int
    expires_at: int
    ari_cert_id: str | None
    at: int  # when it was written, by the issuance's clock


@dataclass
class Issuance:
    """Issuing one certificate whose lease this worker holds, step by step; what the
    steps share is kept here as they find it."""

    engine: Engine
    settings: CertSettings
    sessions: Sessions
    lease: Lease
    clock: Callable[[], float]
    checker_factory: Callable[[], Checker] | None = None
    row: sa.Row | None = None  # the certificate's row, read once the lease is ours
    route: sa.Row | None = None
    names: list[str] = field(default_factory=list)
    session: AcmeSession | None = None
    ca: CertificateAuthority | None = None
    orders: OrderStore | None = None
    providers: dict[str, Provider] = field(default_factory=dict)

    @property
    def renewal(self) -> bool:
        return self.row.issued_at is not None

    def run(self) -> Outcome:
        self._read_rows()
        try:
            result = self._obtain()
        except HeldBack as exc:
            return self._held(str(exc), exc.retry_at)
        except LeaseLost as exc:  # the row is someone else's now: write nothing to it
            log.warning("certificate %s: %s", self.row.domain, exc)
            return Outcome(self.row.id, self.row.domain, "busy", str(exc))
        except CertError as exc:
            return self._failed(str(exc), exc.retry_at)
        except Exception as exc:  # a bug, an unexpected library error, odd data: record it, go on
            if system_fault(exc):
                raise
            log.debug("certificate %s: %s", self.row.domain, redact(traceback.format_exc()))
            return self._failed(f"internal error: {type(exc).__name__}: {exc}")
        try:
            return self._store(result)
        except OSError as exc:
            where = self.settings.cert_dir / self.names[0].replace("*", "_")
            return self._failed(
                f"the CA issued the certificate but writing it to {where} failed: {exc.strerror or exc}"
            )

    def _read_rows(self) -> None:
        with self.engine.connect() as conn:
            self.row = conn.execute(
                sa.select(certificates).where(certificates.c.id == self.lease.cert_id)
            ).first()
            self.route = (
                conn.execute(sa.select(routes).where(routes.c.id == self.row.route_id)).first()
                if self.row.route_id
                else None
            )

    def _obtain(self) -> Result:
        """The certificate from the CA, with the lease still ours."""
        self.names = cert_names(self.row)
        route = self._dns_route()
        clean_leftovers(self.engine, self.row.id, self._provider)
        provider = self._provider(route.tls_dns_provider_id)
        now = self.clock()
        self._connect(route)
        saved = self.orders.load()
        if not self.renewal and saved is None:  # a saved order was checked when it was placed
            self._check_rate_limit(now)
        if self.renewal:
            self._update(status="renewing", updated_at=int(now))
        replaces = self.row.ari_cert_id if (self.renewal and self.ca.offers_ari) else None
        result = self._order_flow(provider).obtain(self.names, replaces=replaces, saved=saved)
        self.lease.extend(force=True)  # still ours: nobody else is writing these files
        return result

    def _connect(self, route: sa.Row) -> None:
        """The run's ACME account at the route's CA, a connection of this thread's own,
        and the certificate's saved order under that account."""
        self.session = self.sessions.get(self.settings.directory_for(route.tls_mode))
        self.ca = self.session.ca()
        self.orders = OrderStore(
            self.engine, self.row.id, self.session.account_id, self.settings.secret, self.settings.cert_dir,
            self.clock,
        )

    def _dns_route(self) -> sa.Row:
        """The certificate's route, as long as it still wants DNS-01."""
        if self.route is None:
            raise ConfigurationError(
                f"certificate {self.row.domain} has no route; it cannot be issued through DNS-01"
            )
        if not (self.route.enabled and self.route.tls_mode == "dns"):
            raise ConfigurationError(f"route {self.route.domain} no longer uses tls_mode dns; not issuing")
        return self.route

    def _provider(self, provider_id: str) -> Provider:
        if provider_id not in self.providers:
            with self.engine.connect() as conn:
                self.providers[provider_id] = build_provider(conn, provider_id, self.settings, self.route.domain)
        return self.providers[provider_id]

    def _check_rate_limit(self, now: float) -> None:
        registered = policy.registered_domain(self.names[0])
        with self.engine.connect() as conn:
            count, frees_at = policy.issued_last_week(conn, registered, self.settings.ca_label, now)
        limit = self.settings.weekly_limit
        if count >= limit:
            raise HeldBack(
                f"held back: {count} certificates for {registered} were issued in the last 7 days "
                f"(limit {limit} per registered domain per week); next attempt when "
                "the oldest leaves the window",
                retry_at=frees_at,
            )

    def _order_flow(self, provider: Provider) -> OrderFlow:
        settings = self.settings
        checker = (
            self.checker_factory() if self.checker_factory else Checker(settings.resolvers, settings.nameserver_port)
        )
        return OrderFlow(
            self.ca,
            provider,
            checker,
            DbJournal(self.engine, self.row.id, self.route.tls_dns_provider_id, self.clock),
            self.orders,
            key_type=settings.key_type,
            propagation_timeout=settings.propagation_timeout,
            order_timeout=settings.order_timeout,
            heartbeat=self.lease.extend,
        )

    def _store(self, result: Result) -> Outcome:
        """Files, rows, audit and issuance log; then the deploy hook and Caddy, whose
        failures are reported on the outcome while the certificate stays active."""
        stored = self._write_files(result)
        self._record(stored)
        self.orders.drop_key_file()
        log.info(
            "certificate %s %s, valid until %s",
            self.names[0],
            self._done,
            time.strftime("%Y-%m-%d", time.gmtime(stored.expires_at)),
        )
        outcome = Outcome(
            self.row.id,
            self.row.domain,
            self._done,
            None,
            stored.expires_at,
            {k: round(v, 3) for k, v in result.timings.items()},
        )
        if self.settings.deploy_hook:
            self._run_deploy_hook(stored, outcome)
        if self.settings.caddy_admin_url:
            self._deploy_to_caddy(outcome)
        return outcome

    @property
    def _done(self) -> str:
        return "renewed" if self.renewal else "issued"

    def _write_files(self, result: Result) -> Stored:
        leaf = leaf_of(result.fullchain_pem)
        issued_at, expires_at = validity(leaf)
        chain_path, key_path = write_certificate(
            self.settings.cert_dir, self.names[0], result.fullchain_pem, result.key_pem
        )
        return Stored(chain_path, key_path, issued_at, expires_at, _ari_id(leaf), int(self.clock()))

    def _record(self, stored: Stored) -> None:
        """One transaction, which also forgets the saved order: the order is done only
        when its certificate is stored."""
        with write_transaction(self.engine) as conn:
            self._activate(conn, stored)
            self._log_issuance(conn, stored)
            conn.execute(
                acme_accounts.update()
                .where(acme_accounts.c.id == self.session.account_id)
                .values(certs_count=acme_accounts.c.certs_count + 1)
            )
            detail = {
                "names": self.names,
                "expires_at": stored.expires_at,
                "fullchain": str(stored.chain_path),
                "replaced": self.row.ari_cert_id if self.renewal else None,
            }
            _audit(conn, f"cert.{self._done}", self.row, stored.at, detail)
            self.orders.forget_in(conn)

    def _activate(self, conn, stored: Stored) -> None:
        _update_row(
            conn,
            self.row.id,
            status="active",
            issued_at=stored.issued_at,
            expires_at=stored.expires_at,
            last_renewed_at=stored.at,
            last_error=None,
            failures=0,
            next_attempt_at=None,
            renew_at=policy.renew_at(stored.issued_at, stored.expires_at),
            ari_cert_id=stored.ari_cert_id,
            ari_next_check_at=stored.at if self.ca.offers_ari else None,
            updated_at=stored.at,
        )

    def _log_issuance(self, conn, stored: Stored) -> None:
        """The issuance log, which the weekly rate limit counts."""
        conn.execute(
            cert_issuance_log.insert().values(
                id=new_id(),
                domain=self.names[0],
                registered_domain=policy.registered_domain(self.names[0]),
                provider=self.settings.ca_label,
                method="dns01",
                issued_at=stored.at,
                expires_at=stored.expires_at,
            )
        )

    def _run_deploy_hook(self, stored: Stored, outcome: Outcome) -> None:
        problem = run_deploy_hook(
            self.settings.deploy_hook, self.row.id, self.names[0], self.names, stored.chain_path, stored.key_path
        )
        if not problem:
            return
        with write_transaction(self.engine) as conn:
            _update_row(conn, self.row.id, last_error=problem, updated_at=stored.at)
            _audit(conn, "cert.deploy_failed", self.row, stored.at, {"error": problem})
        log.error("certificate %s: %s", self.names[0], problem)
        outcome.error = problem

    def _deploy_to_caddy(self, outcome: Outcome) -> None:
        """The certificate is stored and stays active whatever happens here; a failure is
        recorded in `cert_deployments` and retried by the `caddy-sync` job."""
        from .caddy_deploy import deploy_issued

        try:
            problem = deploy_issued(self.engine, self.settings, self.row.id, clock=self.clock)
        except Exception as exc:
            if system_fault(exc):
                raise
            log.error("certificate %s: loading it into Caddy failed: %s", self.row.domain, reason(exc))
            problem = f"not loaded into Caddy yet: internal error: {reason(exc)}"
        if problem:
            outcome.error = f"{outcome.error}; {problem}" if outcome.error else problem

    def _update(self, **values) -> None:
        with write_transaction(self.engine) as conn:
            _update_row(conn, self.row.id, **values)

    def _held(self, why: str, retry_at: float | None) -> Outcome:
        now = int(self.clock())
        self._update(last_error=redact(why), next_attempt_at=int(retry_at or now + policy.DAY), updated_at=now)
        log.warning("certificate %s %s", self.row.domain, redact(why))
        return Outcome(self.row.id, self.row.domain, "held", redact(why))

    def _failed(self, message: str, retry_at: float | None = None) -> Outcome:
        return _failed(self.engine, self.row, message, retry_at, self.clock)


def _ari_id(leaf: x509.Certificate) -> str | None:
    try:
        return ari_cert_id(leaf)
    except Exception:  # noqa: BLE001 - a CA without AKI: no ARI for this one
        return None


def _update_row(conn, cert_id: str, **values) -> None:
    """Write `values` to the certificate's row, as long as the row is the workers'."""
    conn.execute(certificates.update().where(certificates.c.id == cert_id, owned()).values(**values))


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
        _update_row(
            conn,
            row.id,
            status=status,
            last_error=message,
            failures=failures,
            next_attempt_at=next_attempt,
            updated_at=now,
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
