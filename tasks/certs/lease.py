"""Exactly one issuer per certificate: a lease on the `certificates` row (owner, expiry).

Taken with one conditional UPDATE (free, or expired), so two consumers never both win; a
worker that is killed leaves a lease that simply expires. The holder extends it while it
works and gives it up when done; an extension that finds someone else's name stops the
order (LeaseLost) before it writes anything.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.schema import certificates

from .errors import LeaseLost
from .ownership import owned


def new_owner() -> str:
    return f"{socket.gethostname()}:{secrets.token_hex(6)}"


class Lease:
    def __init__(
        self,
        engine: Engine,
        cert_id: str,
        owner: str,
        seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.cert_id, self.owner, self.seconds, self.clock = (
            engine,
            cert_id,
            owner,
            seconds,
            clock,
        )
        self._last_extended = 0.0

    def acquire(self) -> bool:
        now = self.clock()
        free = sa.or_(
            certificates.c.lease_owner.is_(None),
            certificates.c.lease_expires_at.is_(None),
            certificates.c.lease_expires_at < now,
            certificates.c.lease_owner == self.owner,
            # Not a number (text someone wrote, which SQLite keeps): no lease at all.
            certificates.c.lease_expires_at + 0 != certificates.c.lease_expires_at,
        )
        with write_transaction(self.engine) as conn:
            taken = conn.execute(
                certificates.update()
                .where(certificates.c.id == self.cert_id, free, owned())
                .values(lease_owner=self.owner, lease_expires_at=now + self.seconds)
            ).rowcount
        self._last_extended = time.monotonic()
        return taken == 1

    def extend(self, force: bool = False) -> None:
        """Push the expiry out (at most every few seconds); LeaseLost if it is not ours."""
        if not force and time.monotonic() - self._last_extended < min(10.0, self.seconds / 4):
            return
        with write_transaction(self.engine) as conn:
            kept = conn.execute(
                certificates.update()
                .where(certificates.c.id == self.cert_id, certificates.c.lease_owner == self.owner, owned())
                .values(lease_expires_at=self.clock() + self.seconds)
            ).rowcount
        self._last_extended = time.monotonic()
        if kept != 1:
            raise LeaseLost(
                "another worker took over this certificate after our lease expired "
                "(PROXYOS_CERT_LEASE_SECONDS too short?), or its row stopped being the "
                "workers' (no longer a dns01 row of a route with tls_mode dns)"
            )

    def release(self) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                certificates.update()
                .where(certificates.c.id == self.cert_id, certificates.c.lease_owner == self.owner, owned())
                .values(lease_owner=None, lease_expires_at=None)
            )
