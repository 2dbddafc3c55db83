"""The durable journal of published TXT values (`cert_dns_records`), and the clean-up of
values a killed worker left behind."""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.schema import cert_dns_records
from db.sql import new_id

from .errors import CertError
from .isolation import reason, system_fault
from .providers.base import Provider

log = logging.getLogger("proxyos.certs.records")


class DbJournal:
    def __init__(
        self, engine: Engine, cert_id: str, provider_id: str, clock: Callable[[], float]
    ) -> None:
        self.engine, self.cert_id, self.provider_id, self.clock = (
            engine,
            cert_id,
            provider_id,
            clock,
        )

    def published(self, fqdn: str, zone: str, value: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                cert_dns_records.insert().values(
                    id=new_id(),
                    certificate_id=self.cert_id,
                    provider_id=self.provider_id,
                    fqdn=fqdn,
                    zone=zone,
                    value=value,
                    created_at=int(self.clock()),
                )
            )

    def removed(self, fqdn: str, value: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                sa.delete(cert_dns_records).where(
                    cert_dns_records.c.certificate_id == self.cert_id,
                    cert_dns_records.c.fqdn == fqdn,
                    cert_dns_records.c.value == value,
                )
            )


def clean_leftovers(engine: Engine, cert_id: str, provider_for: Callable[[str], Provider]) -> int:
    """Remove values an earlier, interrupted attempt published; returns how many."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(cert_dns_records).where(cert_dns_records.c.certificate_id == cert_id)
        ).all()
    removed = 0
    for row in rows:
        try:
            provider_for(row.provider_id).cleanup(row.fqdn, row.zone, row.value)
        except Exception as exc:  # this value (its provider, say); the others are still tried
            if system_fault(exc):
                raise
            log.warning("leftover TXT %s of certificate %s not removed: %s", row.fqdn, cert_id,
                        exc if isinstance(exc, CertError) else reason(exc))
            continue
        with write_transaction(engine) as conn:
            conn.execute(sa.delete(cert_dns_records).where(cert_dns_records.c.id == row.id))
        removed += 1
    return removed
