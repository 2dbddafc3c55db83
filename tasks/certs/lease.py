"""Exactly one issuer per certificate: a lease on the `certificates` row.

The lease is `db.leases`'s, kept in the row's `lease_owner` / `lease_expires_at` and
judged by the database's clock; only rows the workers own can be leased. A worker that is
killed leaves a lease that expires (or that a consumer on its host takes over at once).
The holder extends it while it works and gives it up when done; an extension that finds
someone else's name stops the order (LeaseLost) before it writes anything.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from db.leases import LeaseTable, Owner
from db.schema import certificates

from .errors import LeaseLost
from .ownership import owned

CERTIFICATE_LEASES = LeaseTable(
    certificates, certificates.c.id, certificates.c.lease_owner, certificates.c.lease_expires_at,
    own_rows=False, scope=owned,
)


class Lease:
    def __init__(self, engine: Engine, cert_id: str, owner: Owner, seconds: float) -> None:
        self.engine, self.cert_id, self.owner, self.seconds = engine, cert_id, owner, seconds
        self._last_extended = 0.0

    def acquire(self) -> bool:
        taken = CERTIFICATE_LEASES.take(self.engine, self.cert_id, self.owner, self.seconds)
        self._last_extended = time.monotonic()
        return taken

    def extend(self, force: bool = False) -> None:
        """Push the expiry out (at most every few seconds); LeaseLost if it is not ours."""
        if not force and time.monotonic() - self._last_extended < min(10.0, self.seconds / 4):
            return
        kept = CERTIFICATE_LEASES.renew(self.engine, self.cert_id, self.owner, self.seconds)
        self._last_extended = time.monotonic()
        if not kept:
            raise LeaseLost(
                "another worker took over this certificate after our lease expired "
                "(PROXYOS_CERT_LEASE_SECONDS too short?), or its row stopped being the "
                "workers' (no longer a dns01 row of a route with tls_mode dns)"
            )

    def release(self) -> None:
        CERTIFICATE_LEASES.release(self.engine, self.cert_id, self.owner)
