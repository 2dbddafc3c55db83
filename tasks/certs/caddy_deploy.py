"""Loading the workers' certificates into the running Caddy, and keeping them there.

Right after an issuance the new certificate is loaded (`deploy_issued`), retried for a
few seconds while Caddy reloads or restarts. The `caddy-sync` job (`sync_caddy`, every
minute) compares what Caddy holds with the certificates the workers own, by fingerprint,
and loads what is missing or stale, for instance after ProxyOS replaced Caddy's whole
configuration; it writes nothing, to Caddy or the database, when all is in step. What was
deployed, and why the current certificate is not there yet, is kept in
`cert_deployments` (the workers' own table).

The private key is read from `PROXYOS_CERT_DIR` and sent only in the admin request's
body: never logged, never in an error or a summary (Caddy's error messages are cut to
its own words without PEM or base64 runs)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.schema import cert_deployments, certificates, routes
from db.sql import upsert

from . import caddy_load
from .caddy_admin import AdminClient, CaddyError, CaddyRefused, CaddyUnreachable
from .caddy_load import Pem, Snapshot, dns_names, fingerprint_of, leaf
from .files import cert_paths
from .isolation import number
from .ownership import owned
from .settings import CertSettings
from .sync import cert_names, plan, wants_dns01

log = logging.getLogger("proxyos.certs.caddy")
TARGET = "caddy"
RETRY_DELAYS = (0.5, 1.0, 2.0)  # after an issuance: a Caddy reloading or restarting answers again
UNREACHABLE_BACKOFF_MAX = 300  # seconds; the sync job runs every minute anyway
REFUSED_BACKOFF_MAX = 3600  # Caddy rejected this certificate: do not send it every minute


def backoff_seconds(failures: int, cap: int) -> int:
    """30 s, 1 min, 2 min, 4 min ... up to `cap`."""
    return int(min(cap, 30 * 2 ** min(max(failures, 1) - 1, 20)))


def client_for(settings: CertSettings) -> AdminClient | None:
    return AdminClient(settings.caddy_admin_url) if settings.caddy_admin_url else None


@dataclass
class Deployable:
    """The certificates the workers want in Caddy now."""

    pems: list[Pem] = field(default_factory=list)
    domains: dict[str, str] = field(default_factory=dict)  # cert id -> the row's domain
    unreadable: dict[str, str] = field(default_factory=dict)  # cert id -> why its files could not be read

    @property
    def ids(self) -> set[str]:
        return set(self.domains)


def deployable(engine: Engine, settings: CertSettings, now: float, only: set[str] | None = None) -> Deployable:
    """Each certificate group's lead row (the one whose files are written) whose route
    wants DNS-01 and whose certificate has not expired, with its files."""
    with engine.connect() as conn:
        groups, _ = plan(conn)
        leads = [group.lead.route_id for group in groups]
        rows = []
        for start in range(0, len(leads), 500):
            rows += conn.execute(
                sa.select(certificates)
                .join(routes, routes.c.id == certificates.c.route_id)
                .where(certificates.c.route_id.in_(leads[start:start + 500]), owned(), wants_dns01(),
                       certificates.c.issued_at.is_not(None))
            ).all()
    found = Deployable()
    for row in rows:
        expires = number(row.expires_at)
        if (only is not None and row.id not in only) or not expires or expires <= now:
            continue
        found.domains[row.id] = row.domain
        chain_path, key_path = cert_paths(settings.cert_dir, cert_names(row)[0])
        try:
            chain, key = chain_path.read_text(), key_path.read_text()
            cert = leaf(chain)
        except (OSError, ValueError) as exc:
            if row.renew_at is None:  # a row the dashboard wrote: the workers never issued it
                del found.domains[row.id]
                continue
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            found.unreadable[row.id] = f"certificate files {chain_path.parent} not readable here ({why.lower()})"
            continue
        found.pems.append(Pem(row.id, dns_names(cert), chain, key, fingerprint_of(cert), f"{cert.serial_number:x}"))
    return found


def records(engine: Engine, ids: set[str] | None = None) -> dict[str, sa.Row]:
    query = sa.select(cert_deployments)
    with engine.connect() as conn:
        found = conn.execute(query).all()
    return {r.certificate_id: r for r in found if ids is None or r.certificate_id in ids}


def _in_step(record, pem: Pem) -> bool:
    return record is not None and record.fingerprint == pem.fingerprint and record.pending_since is None


def _due(record, now: float) -> bool:
    return record is None or not number(record.next_attempt_at) or number(record.next_attempt_at) <= now


def _save_deployed(conn, pem: Pem, record, now: int) -> None:
    changed = record is None or record.fingerprint != pem.fingerprint or record.pending_since is not None
    values = {"certificate_id": pem.cert_id, "target": TARGET, "pending_since": None, "last_error": None,
              "failures": 0, "next_attempt_at": None, "last_attempt_at": now}
    if changed:
        values |= {"names": json.dumps(sorted(pem.names)), "serial": pem.serial, "fingerprint": pem.fingerprint,
                   "deployed_at": now}
    conn.execute(upsert(conn, cert_deployments, ["certificate_id"], [k for k in values if k != "certificate_id"])
                 .values(**values))


def _save_failed(conn, cert_id: str, record, message: str, cap: int, now: int) -> int:
    failures = int(number(record.failures) or 0) + 1 if record is not None else 1
    next_at = now + backoff_seconds(failures, cap)
    values = {"certificate_id": cert_id, "target": TARGET, "last_error": message[:1000], "failures": failures,
              "next_attempt_at": next_at, "last_attempt_at": now,
              "pending_since": (record.pending_since if record is not None and record.pending_since else now)}
    conn.execute(upsert(conn, cert_deployments, ["certificate_id"], [k for k in values if k != "certificate_id"])
                 .values(**values))
    return next_at


def _cap(exc: CaddyError) -> int:
    return UNREACHABLE_BACKOFF_MAX if isinstance(exc, CaddyUnreachable) else REFUSED_BACKOFF_MAX


def deploy_issued(
    engine: Engine,
    settings: CertSettings,
    cert_id: str,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Load the certificate just issued for `cert_id` into Caddy, replacing the entry for
    the same names and keeping every other. None when Caddy holds it; else the reason,
    also recorded (the `caddy-sync` job tries again)."""
    client = client_for(settings)
    if client is None:
        return None
    want = deployable(engine, settings, clock(), only={cert_id})
    pem = next(iter(want.pems), None)
    problem: CaddyError | None = None
    if pem is None:
        problem = CaddyError(want.unreadable.get(cert_id, f"certificate {cert_id} has nothing to deploy"))
    else:
        for delay in (*RETRY_DELAYS, None):
            try:
                caddy_load.update(client, caddy_load.replace_plan([pem]))
                problem = None
                break
            except CaddyUnreachable as exc:
                problem = exc
            except CaddyError as exc:
                problem = exc
                break
            if delay is not None:
                sleep(delay)
    now = int(clock())
    old = records(engine, {cert_id}).get(cert_id)
    with write_transaction(engine) as conn:
        if problem is None:
            _save_deployed(conn, pem, old, now)
        else:
            next_at = _save_failed(conn, cert_id, old, str(problem), _cap(problem), now)
    if problem is None:
        log.info("certificate %s loaded into Caddy (serial %s)", want.domains.get(cert_id, cert_id), pem.serial)
        return None
    log.error("certificate %s not loaded into Caddy yet (next attempt %s): %s", want.domains.get(cert_id, cert_id),
              time.strftime("%H:%M:%S UTC", time.gmtime(next_at)), problem)
    return f"not loaded into Caddy yet: {problem}"


def sync_caddy(engine: Engine, settings: CertSettings, *, clock: Callable[[], float] = time.time) -> dict:
    """One `caddy-sync` run. Raises CaddyError (after recording it on the certificates
    that are waiting) when Caddy cannot be asked at all."""
    client = client_for(settings)
    if client is None:
        return {"caddy": "not configured (PROXYOS_CADDY_ADMIN_URL is not set)"}
    now = clock()
    want = deployable(engine, settings, now)
    known = records(engine)
    try:
        snapshot = caddy_load.read(client)
    except CaddyError as exc:
        waiting = [p for p in want.pems if not _in_step(known.get(p.cert_id), p) and _due(known.get(p.cert_id), now)]
        _record(engine, want, known, [], {p.cert_id: exc for p in waiting}, now)
        raise
    present = snapshot.fingerprints()
    missing = [p for p in want.pems if p.fingerprint not in present]
    due = [p for p in missing if _due(known.get(p.cert_id), now)]
    wanted_prints = {p.fingerprint for p in want.pems}

    def drop(item: caddy_load.Loaded) -> bool:
        """Ours, and for no certificate the workers deploy now (route gone, left DNS-01,
        expired): Caddy manages the name again."""
        if not item.ours or item.fingerprint in wanted_prints:
            return False
        return item.cert_id not in want.ids

    stale = [item for item in snapshot.loaded if drop(item)]
    written, failed = _load(client, snapshot, due, drop) if (due or stale) else ([], {})
    removed = len(stale) if written or not failed else 0  # every successful write drops them
    held = [p for p in want.pems if p.fingerprint in present]
    _record(engine, want, known, held + written, failed, now)
    for pem in written:
        log.info("certificate %s loaded into Caddy (serial %s)", want.domains[pem.cert_id], pem.serial)
    if failed and len(failed) == len(due) and isinstance(next(iter(failed.values())), CaddyUnreachable):
        raise next(iter(failed.values()))
    return {
        "caddy": client.url,
        "in_caddy": len(held) + len(written),
        "loaded": sorted(want.domains[p.cert_id] for p in written),
        "removed": removed,
        "waiting": sorted(want.domains[p.cert_id] for p in missing if p not in due),
        "failed": {want.domains[i]: str(e) for i, e in failed.items()},
        "unreadable": {want.domains[i]: why for i, why in want.unreadable.items()},
    }


def _load(client: AdminClient, snapshot: Snapshot, due: list[Pem], drop) -> tuple[list[Pem], dict[str, CaddyError]]:
    """Load `due` and drop what `drop` names, in one write; if Caddy refuses it, each
    certificate alone, so that one bad certificate keeps no other out."""
    try:
        _update_from(client, snapshot, caddy_load.replace_plan(due, drop))
        return due, {}
    except CaddyRefused as exc:
        if len(due) <= 1:
            return [], {p.cert_id: exc for p in due}
    except CaddyError as exc:
        return [], {p.cert_id: exc for p in due}
    written, failed = [], {}
    for pem in due:
        try:
            caddy_load.update(client, caddy_load.replace_plan([pem], drop))
            written.append(pem)
        except CaddyError as exc:
            failed[pem.cert_id] = exc
    return written, failed


def _update_from(client: AdminClient, snapshot: Snapshot, plan_: caddy_load.Plan) -> None:
    """Write `plan_` over the list already read; when someone changed it in between,
    start again from a fresh read."""
    try:
        caddy_load.write(client, snapshot, plan_(snapshot))
    except caddy_load.Conflict:
        caddy_load.update(client, plan_)


def _record(engine: Engine, want: Deployable, known: dict, deployed: list[Pem], failed: dict, now: float) -> None:
    """Write only what changed: a run with everything in step writes nothing."""
    ts = int(now)
    todo = [p for p in deployed if not _in_step(known.get(p.cert_id), p)]
    unreadable = {i: w for i, w in want.unreadable.items()
                  if (r := known.get(i)) is None or r.last_error != w or _due(r, now)}
    if not (todo or failed or unreadable):
        return
    with write_transaction(engine) as conn:
        for pem in todo:
            _save_deployed(conn, pem, known.get(pem.cert_id), ts)
        for cert_id, exc in failed.items():
            _save_failed(conn, cert_id, known.get(cert_id), str(exc), _cap(exc), ts)
        for cert_id, why in unreadable.items():
            _save_failed(conn, cert_id, known.get(cert_id), why, UNREACHABLE_BACKOFF_MAX, ts)
