"""Job leases: at most one run of an exclusive job at a time across every consumer.

A lease is a row in `job_leases` (job, owner, expiry). The holder renews it every third
of its time while the run lasts, so a short lease suffices for a long run and a killed
holder blocks the next run for at most `seconds`. A release that fails (the database
is down for a moment) is retried in the background until it succeeds or the lease
expires by itself.

Expiry is written and judged by the database's clock, not the host's: consumers on hosts
whose clocks differ by more than a lease still agree on whether a lease has expired.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import write_transaction
from db.schema import job_leases
from db.sql import insert_or_ignore

log = logging.getLogger("proxyos.leases")


def _db_now(conn: Connection) -> sa.ColumnElement[float]:
    """Now, in seconds since the epoch, by the database server's clock (on SQLite, every
    consumer is on the database's host)."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.func.extract("epoch", sa.func.statement_timestamp()), sa.Float)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


def acquire_lease(engine: Engine, name: str, owner: str, seconds: float) -> bool:
    """Take the lease on `name` unless a live one is held. A lease that expired (its holder
    crashed) is taken over."""
    with write_transaction(engine) as conn:
        now = _db_now(conn)
        taken = conn.execute(
            job_leases.update()
            .where(job_leases.c.job == name, job_leases.c.expires_at < now)
            .values(owner=owner, expires_at=now + seconds)
        ).rowcount
        if taken:
            return True
        inserted = conn.execute(
            insert_or_ignore(conn, job_leases)
            .values(job=name, owner=owner, expires_at=now + seconds)
            .returning(job_leases.c.job)
        ).first()
        return inserted is not None


def lease_holder(engine: Engine, name: str) -> tuple[str, float] | None:
    """Who holds the lease on `name`, and in how many seconds it expires unless renewed."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(job_leases.c.owner, job_leases.c.expires_at - _db_now(conn)).where(job_leases.c.job == name)
        ).first()
    return (row[0], float(row[1])) if row else None


def renew_lease(engine: Engine, name: str, owner: str, seconds: float) -> bool:
    """Extend a lease we hold; False if it is no longer ours."""
    with write_transaction(engine) as conn:
        return conn.execute(
            job_leases.update()
            .where(job_leases.c.job == name, job_leases.c.owner == owner)
            .values(expires_at=_db_now(conn) + seconds)
        ).rowcount == 1


def release_lease(engine: Engine, name: str, owner: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(job_leases).where(job_leases.c.job == name, job_leases.c.owner == owner))


@contextmanager
def keep_lease(engine: Engine, name: str, owner: str, seconds: float) -> Iterator[None]:
    """While the block runs, renew the lease every third of `seconds`; release it after."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3):
            try:
                if not renew_lease(engine, name, owner, seconds):
                    log.warning("the lease of %s was taken over while this run went on", name)
                    return
            except Exception as exc:  # try again at the next beat, before the lease runs out
                log.warning("could not renew the lease of %s: %s", name, exc)

    beat = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        _release_or_retry(engine, name, owner, deadline=time.time() + seconds)


def _release_or_retry(engine: Engine, name: str, owner: str, deadline: float) -> None:
    try:
        release_lease(engine, name, owner)
        return
    except Exception as exc:
        log.warning("could not release the lease of %s yet, retrying: %s", name, exc)

    def retry() -> None:
        while time.time() < deadline:
            time.sleep(1.0)
            try:
                release_lease(engine, name, owner)
                return
            except Exception:
                continue  # expires by itself at the deadline

    threading.Thread(target=retry, name=f"release-{name}", daemon=True).start()


def release_dead_leases(engine: Engine, hostname: str, job: str | None = None) -> list[str]:
    """Delete the job leases (of `job`, or all) held by dead processes of this host (a
    lease's owner is `host:pid/run_id`): a run killed on this host does not block its job
    until the lease expires. Returns the jobs whose lease was released."""
    query = sa.select(job_leases.c.job, job_leases.c.owner).where(job_leases.c.owner.like(f"{hostname}:%"))
    if job is not None:
        query = query.where(job_leases.c.job == job)
    with engine.connect() as conn:
        held = conn.execute(query).all()
    dead = [row for row in held if _dead_owner(row.owner, hostname)]
    if dead:
        with write_transaction(engine) as conn:
            for row in dead:
                conn.execute(sa.delete(job_leases).where(job_leases.c.job == row.job, job_leases.c.owner == row.owner))
    return [row.job for row in dead]


def _dead_owner(owner: str, hostname: str) -> bool:
    """True for an owner `hostname:pid/run_id` whose process is gone."""
    host, _, _ = owner.partition("/")
    name, _, pid = host.rpartition(":")
    return name == hostname and pid.isdigit() and not process_alive(int(pid))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
