"""Leases: at most one holder of a piece of work at a time, across every consumer and host.

A lease is an owner and an expiry kept in some row: a row of its own (`job_leases`, made
when taken and deleted when released) or columns of the row it guards (a certificate's
`lease_owner` / `lease_expires_at`). Taking it is one conditional UPDATE (free, expired,
or held by a process of this host that is gone), so two takers never both win.

Expiry is written and judged by the database's clock, not the host's: consumers on hosts
whose clocks differ by more than a lease still agree on whether a lease has expired.

Every owner is `host:pid/tag` (`Owner`): the host and process that took it, so a
consumer starting on that host can tell a dead holder's lease and take it over at once
instead of waiting for it to expire.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .engine import write_transaction
from .schema import job_leases
from .sql import insert_or_ignore

log = logging.getLogger("proxyos.leases")


@dataclass(frozen=True)
class Owner:
    """Who holds a lease: `host:pid/tag` (the tag tells the holder's runs apart)."""

    host: str
    pid: int
    tag: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}/{self.tag}"

    @classmethod
    def here(cls, tag: str | None = None) -> Owner:
        """An owner for this process (its pid now: a forked worker is its own owner)."""
        return cls(socket.gethostname(), os.getpid(), tag or secrets.token_hex(6))

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        """The owner written as `text`, or None for text in another shape (an older
        worker's, or someone else's)."""
        where, slash, tag = (text or "").partition("/")
        host, _, pid = where.rpartition(":")
        if not slash or not host or not pid.isdigit():
            return None
        return cls(host, int(pid), tag)

    def gone_from(self, hostname: str) -> bool:
        """True when this owner is a process of `hostname` that no longer exists (only
        this host's processes can be checked)."""
        return self.host == hostname and not process_alive(self.pid)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def db_now(conn: Connection) -> sa.ColumnElement[float]:
    """Now, in seconds since the epoch, by the database server's clock (on SQLite, every
    consumer is on the database's host)."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.func.extract("epoch", sa.func.statement_timestamp()), sa.Float)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


@dataclass(frozen=True)
class LeaseTable:
    """Where leases of one kind are kept. `own_rows`: each lease is a row of its own
    (inserted when taken, deleted when released), else the lease lives in columns of an
    existing row (set when taken, cleared when released). `scope`, when given, is a
    condition a row must meet to be leased at all (a certificate the workers own)."""

    table: sa.Table
    key: sa.Column
    owner: sa.Column
    expires_at: sa.Column
    own_rows: bool
    scope: Callable[[], sa.ColumnElement[bool]] | None = None

    def _where(self, key: str, *conditions) -> list:
        where = [self.key == key, *conditions]
        if self.scope is not None:
            where.append(self.scope())
        return where

    def _free(self, conn: Connection, owner: str) -> sa.ColumnElement[bool]:
        return sa.or_(
            self.owner.is_(None),
            self.expires_at.is_(None),
            self.expires_at < db_now(conn),
            self.owner == owner,
            # Not a number (text someone wrote, which SQLite keeps): no lease at all.
            self.expires_at + 0 != self.expires_at,
        )

    def take(self, engine: Engine, key: str, owner: Owner | str, seconds: float) -> bool:
        """Take the lease on `key` unless a live one is held. One that expired, or whose
        holder is a process of this host that is gone, is taken over."""
        if self._take(engine, key, str(owner), seconds):
            return True
        if self.release_dead(engine, socket.gethostname(), key):
            return self._take(engine, key, str(owner), seconds)
        return False

    def _take(self, engine: Engine, key: str, owner: str, seconds: float) -> bool:
        with write_transaction(engine) as conn:
            now = db_now(conn)
            taken = conn.execute(
                self.table.update()
                .where(*self._where(key, self._free(conn, owner)))
                .values({self.owner: owner, self.expires_at: now + seconds})
            ).rowcount
            if taken or not self.own_rows:
                return taken == 1
            inserted = conn.execute(
                insert_or_ignore(conn, self.table)
                .values({self.key: key, self.owner: owner, self.expires_at: now + seconds})
                .returning(self.key)
            ).first()
            return inserted is not None

    def renew(self, engine: Engine, key: str, owner: Owner | str, seconds: float) -> bool:
        """Extend a lease we hold; False if it is no longer ours."""
        with write_transaction(engine) as conn:
            return conn.execute(
                self.table.update()
                .where(*self._where(key, self.owner == str(owner)))
                .values({self.expires_at: db_now(conn) + seconds})
            ).rowcount == 1

    def release(self, engine: Engine, key: str, owner: Owner | str) -> None:
        with write_transaction(engine) as conn:
            self._release(conn, key, str(owner))

    def _release(self, conn: Connection, key: str, owner: str) -> None:
        where = self._where(key, self.owner == owner)
        if self.own_rows:
            conn.execute(sa.delete(self.table).where(*where))
        else:
            conn.execute(self.table.update().where(*where).values({self.owner: None, self.expires_at: None}))

    def holder(self, engine: Engine, key: str) -> tuple[str, float] | None:
        """Who holds the lease on `key`, and in how many seconds it expires unless renewed."""
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(self.owner, self.expires_at - db_now(conn)).where(*self._where(key, self.owner.is_not(None)))
            ).first()
        return (row[0], float(row[1] or 0)) if row else None

    def release_dead(self, engine: Engine, hostname: str, key: str | None = None) -> list[str]:
        """Release the leases (on `key`, or all) held by processes of `hostname` that are
        gone: a run killed on this host does not block its work until the lease expires.
        Returns the keys released."""
        query = sa.select(self.key, self.owner).where(self.owner.like(f"{hostname}:%"))
        if key is not None:
            query = query.where(self.key == key)
        with engine.connect() as conn:
            held = conn.execute(query).all()
        dead = [(k, owner) for k, owner in held if (parsed := Owner.parse(owner)) and parsed.gone_from(hostname)]
        if dead:
            with write_transaction(engine) as conn:
                for k, owner in dead:
                    self._release(conn, k, owner)
        return [k for k, _ in dead]

    @contextmanager
    def kept(self, engine: Engine, key: str, owner: Owner | str, seconds: float) -> Iterator[None]:
        """While the block runs, renew the lease every third of `seconds`; release it
        after. A release that fails (the database is down for a moment) is retried in the
        background until it succeeds or the lease expires by itself."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(seconds / 3):
                try:
                    if not self.renew(engine, key, owner, seconds):
                        log.warning("the lease of %s was taken over while this run went on", key)
                        return
                except Exception as exc:  # try again at the next beat, before the lease runs out
                    log.warning("could not renew the lease of %s: %s", key, exc)

        beat = threading.Thread(target=renew, name=f"lease-{key}", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            self._release_or_retry(engine, key, owner, deadline=time.time() + seconds)

    def _release_or_retry(self, engine: Engine, key: str, owner: Owner | str, deadline: float) -> None:
        try:
            self.release(engine, key, owner)
            return
        except Exception as exc:
            log.warning("could not release the lease of %s yet, retrying: %s", key, exc)

        def retry() -> None:
            while time.time() < deadline:
                time.sleep(1.0)
                try:
                    self.release(engine, key, owner)
                    return
                except Exception:
                    continue  # expires by itself at the deadline

        threading.Thread(target=retry, name=f"release-{key}", daemon=True).start()


JOB_LEASES = LeaseTable(  # one row per exclusive job while a run of it goes on
    job_leases, job_leases.c.job, job_leases.c.owner, job_leases.c.expires_at, own_rows=True
)
