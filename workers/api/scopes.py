"""Which of ProxyOS's API-key scopes a request needs.

Reading (every GET) needs a key with any scope. Enqueueing `issue` or `certs` needs
`certs:write`, `health` needs `routes:write`, every other job `admin`; `admin` allows
everything."""

from __future__ import annotations

from collections.abc import Collection

ADMIN = "admin"
JOB_SCOPES = {"issue": "certs:write", "certs": "certs:write", "health": "routes:write"}


def for_job(job: str) -> str:
    return JOB_SCOPES.get(job, ADMIN)


def allows(scopes: Collection[str], needed: str | None) -> bool:
    """`needed` None: any scope will do (reading)."""
    if needed is None:
        return bool(scopes)
    return ADMIN in scopes or needed in scopes
