"""The `certs` job: sync rows with routes, mark expired ones, refresh ARI windows, and
issue or renew everything that is due, several certificates at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.leases import Owner
from db.schema import cert_dns_records, certificates, routes
from tasks.redaction import redact

from . import policy
from .ari import fetch_window
from .errors import CertError
from .isolation import number, reason, system_fault
from .issue import Outcome, Sessions, build_provider, issue_certificate, record_failure
from .lease import Lease
from .ownership import owned
from .policy import due_reason
from .records import clean_leftovers
from .settings import CertSettings
from .sync import SyncResult, mirror_group, sync_certificates, wants_dns01

log = logging.getLogger("proxyos.certs.sweep")


def _candidates(engine: Engine, lead_ids: list[str]) -> list[sa.Row]:
    """The rows that are ordered: each group's lead row (the others mirror it)."""
    found = []
    with engine.connect() as conn:
        for start in range(0, len(lead_ids), 500):
            found += conn.execute(
                sa.select(certificates, routes.c.tls_mode)
                .join(routes, routes.c.id == certificates.c.route_id)
                .where(certificates.c.id.in_(lead_ids[start:start + 500]), owned(), wants_dns01())
            ).all()
    return found


def mark_expired(engine: Engine, now: int) -> int:
    """Rows of the workers' own past their expiry become `expired` (never another's)."""
    with write_transaction(engine) as conn:
        return conn.execute(
            certificates.update()
            .where(
                owned(),
                certificates.c.expires_at.is_not(None),
                certificates.c.expires_at <= now,
                certificates.c.status.in_(("active", "error", "renewing")),
            )
            .values(status="expired", updated_at=now)
        ).rowcount


def mirror_groups(engine: Engine, synced: SyncResult, now: int) -> int:
    """Show each lead row's state on its group's other rows."""
    changed = 0
    for group in synced.groups:
        try:
            changed += mirror_group(engine, group, now)
        except Exception as exc:
            if system_fault(exc):
                raise
            log.warning("certificate %s: its group's rows not updated: %s", group.group.lead.domain, reason(exc))
    return changed


def refresh_ari(
    engine: Engine, settings: CertSettings, sessions: Sessions, rows, now: float
) -> int:
    """Ask the CA for its renewal window of each active certificate whose check is due."""
    checked = 0
    for row in rows:
        if row.status != "active" or not row.ari_cert_id or not row.auto_renew:
            continue
        next_check = number(row.ari_next_check_at)
        if next_check is not None and next_check > now:
            continue
        try:
            session = sessions.get(settings.directory_for(row.tls_mode))
        except CertError as exc:
            log.warning("ARI check skipped: %s", exc)
            return checked
        try:
            checked += _refresh_one(engine, session, row, now)
        except Exception as exc:  # this row's values; the lifetime rule still applies to it
            if system_fault(exc):
                raise
            log.warning("ARI for %s not checked: %s", row.domain, reason(exc))
    return checked


def _refresh_one(engine: Engine, session, row, now: float) -> int:
    try:
        window = fetch_window(session.ca(), row.ari_cert_id, now)
    except (requests.RequestException, ValueError, KeyError) as exc:
        log.warning(
            "ARI for %s unavailable (%s); keeping the lifetime rule",
            row.domain,
            type(exc).__name__,
        )
        _update(engine, row.id, ari_next_check_at=int(now + 3600))
        return 0
    if window is None:  # the CA offers no renewal information
        _update(engine, row.id, ari_next_check_at=None)
        return 0
    _update(
        engine,
        row.id,
        renew_at=policy.ari_pick(window.start, window.end),
        ari_next_check_at=int(now + window.retry_after),
    )
    return 1


def clean_orphans(engine: Engine, settings: CertSettings, owner: Owner) -> int:
    """Remove TXT values a killed worker left behind for certificates nobody is working
    on (whether or not they are due), under each certificate's lease."""
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(cert_dns_records.c.certificate_id).distinct())]
    removed = 0
    for cert_id in ids:
        lease = Lease(engine, cert_id, owner, settings.lease_seconds)
        if not lease.acquire():
            continue
        try:
            cache: dict = {}

            def provider_for(provider_id: str, cert_id=cert_id, cache=cache):
                if provider_id not in cache:
                    with engine.connect() as conn:
                        cache[provider_id] = build_provider(conn, provider_id, settings, f"certificate {cert_id}")
                return cache[provider_id]

            removed += clean_leftovers(engine, cert_id, provider_for)
        except Exception as exc:  # its provider row, say: the issuance records it; others go on
            if system_fault(exc):
                raise
            log.warning("leftover TXT values of certificate %s not removed: %s", cert_id,
                        exc if isinstance(exc, CertError) else reason(exc))
        finally:
            lease.release()
    return removed


def _update(engine: Engine, cert_id: str, **values) -> None:
    with write_transaction(engine) as conn:
        conn.execute(certificates.update().where(certificates.c.id == cert_id, owned()).values(**values))


def run_sweep(
    engine: Engine,
    settings: CertSettings,
    *,
    clock: Callable[[], float] = time.time,
    checker_factory=None,
    sessions: Sessions | None = None,
) -> dict:
    now = clock()
    synced = sync_certificates(engine, int(now))
    expired = mark_expired(engine, int(now))
    sessions = sessions or Sessions(engine, settings, clock)
    owner = Owner.here()
    orphans = clean_orphans(engine, settings, owner)
    leads = [group.lead_id for group in synced.groups]
    rows = _candidates(engine, leads)
    ari_checked = refresh_ari(engine, settings, sessions, rows, now)
    rows = _candidates(engine, leads)
    due = [(row, why) for row in rows if (why := due_reason(row, now))]
    outcomes: list[Outcome] = []
    if due:
        with ThreadPoolExecutor(
            max_workers=max(1, settings.concurrency), thread_name_prefix="cert"
        ) as pool:
            futures = [
                pool.submit(
                    issue_certificate,
                    engine,
                    settings,
                    sessions,
                    row.id,
                    clock=clock,
                    owner=owner,
                    checker_factory=checker_factory,
                    still_due=lambda fresh: due_reason(fresh, now, leased_by_us=True) is not None,
                )
                for row, _ in due
            ]
            fault = None
            for future, (row, _) in zip(futures, due, strict=True):
                try:
                    outcomes.append(future.result())
                except Exception as exc:
                    if system_fault(exc):  # the database unavailable: the run fails, the next retries
                        fault = fault or exc
                        log.error("certificate %s: %s", row.domain, redact(reason(exc)))
                        continue
                    outcomes.append(record_failure(engine, row, f"internal error: {reason(exc)}", clock))
            if fault is not None:
                raise fault
    mirror_groups(engine, synced, int(clock()))
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
    return {
        "created": len(synced.created),
        "merged": synced.merged,
        "names_changed": len(synced.updated),
        "route_problems": list(synced.problems.values()),
        "account_problems": sessions.problems(),
        "expired": expired,
        "ari_checked": ari_checked,
        "leftover_txt_removed": orphans,
        "due": len(due),
        **counts,
        "certificates": [o.as_dict() for o in outcomes],
    }
