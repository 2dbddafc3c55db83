"""When to renew, when to retry, and when to hold back for a CA's rate limit."""

from __future__ import annotations

import functools
import random
import socket

import sqlalchemy as sa
from publicsuffixlist import PublicSuffixList
from sqlalchemy.engine import Connection

from db.leases import Owner
from db.schema import cert_issuance_log

from .isolation import number

WEEK = 7 * 24 * 3600
DAY = 24 * 3600
SHORT_LIFETIME = 10 * DAY


def renew_at(issued_at: int, expires_at: int) -> int:
    """A third of the lifetime left; half of it for lifetimes of 10 days or less."""
    lifetime = max(0, expires_at - issued_at)
    left = lifetime / 2 if lifetime <= SHORT_LIFETIME else lifetime / 3
    return int(expires_at - left)


def ari_pick(start: float, end: float, rng: random.Random | None = None) -> int:
    """A random moment in the CA's suggested window (RFC 9773 4.2)."""
    rng = rng or random
    return int(start + rng.uniform(0, max(0.0, end - start)))


def backoff_seconds(failures: int, rng: random.Random | None = None) -> int:
    """About 1 min, 10 min, 100 min, then at most a day; +-20% jitter."""
    rng = rng or random
    base = min(60 * 10 ** max(0, failures - 1), DAY)
    return int(base * rng.uniform(0.8, 1.2)) if base < DAY else int(base * rng.uniform(0.8, 1.0))


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped in the package: no network


def registered_domain(name: str) -> str:
    """The registered domain of an ACME name (`names.acme_name`), for rate limits."""
    name = name.removeprefix("*.").rstrip(".").lower()
    return _psl().privatesuffix(name) or name


def issued_last_week(
    conn: Connection, registered: str, provider: str, now: float
) -> tuple[int, int | None]:
    """How many certificates for `registered` this CA issued in the last 7 days, and
    when the oldest of them leaves the window."""
    where = (
        cert_issuance_log.c.registered_domain == registered,
        cert_issuance_log.c.provider == provider,
        cert_issuance_log.c.issued_at > now - WEEK,
    )
    count, oldest = conn.execute(
        sa.select(sa.func.count(), sa.func.min(cert_issuance_log.c.issued_at)).where(*where)
    ).one()
    return int(count), (int(oldest) + WEEK if oldest is not None else None)


def due_reason(row, now: float, leased_by_us: bool = False) -> str | None:
    """Why `row` should be worked on now, or None. A time that is not a number (text
    someone wrote into the column) counts as none."""
    lease_expires_at, next_attempt_at = number(row.lease_expires_at), number(row.next_attempt_at)
    if not leased_by_us and row.lease_owner and lease_expires_at and lease_expires_at > now and not _holder_gone(row):
        return None
    if next_attempt_at and next_attempt_at > now:
        return None
    if row.status == "provisioning":
        return "new"
    if not row.auto_renew:
        return None
    if row.status in ("error", "expired", "renewing"):
        return "retry" if row.status != "expired" else "expired"
    if row.status == "active":
        when = renewal_time(row)
        if when is None or when <= now:  # an active row without dates: nothing to trust
            return "renewal"
    return None


def _holder_gone(row) -> bool:
    """The row's lease is held by a process of this host that no longer exists: taking
    the lease takes it over at once (`db.leases`)."""
    owner = Owner.parse(row.lease_owner)
    return owner is not None and owner.gone_from(socket.gethostname())


def renewal_time(row) -> int | None:
    """The row's renewal time: the stored one (ARI, or set at issuance), else the
    lifetime rule on its dates (rows the dashboard wrote have no `renew_at`)."""
    stored, issued_at, expires_at = number(row.renew_at), number(row.issued_at), number(row.expires_at)
    if stored is not None:
        return int(stored)
    if issued_at is not None and expires_at is not None:
        return renew_at(int(issued_at), int(expires_at))
    return None
