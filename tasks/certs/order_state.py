"""Whether a saved order can be continued, by what the CA says about it now."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from acme import messages

from .acme_errors import call
from .ca import CertificateAuthority
from .saved_order import SavedOrder

CONTINUABLE = (
    messages.STATUS_PENDING,
    messages.STATUS_READY,
    messages.STATUS_PROCESSING,
    messages.STATUS_VALID,
)


@dataclass
class SavedState:
    body: messages.Order | None = None
    unusable: str | None = None  # why the order cannot be continued


def saved_order_state(ca: CertificateAuthority, saved: SavedOrder, names: list[str]) -> SavedState:
    """The saved order as the CA has it now. A CertError (CA unreachable, server error)
    passes: the order may still be good, so it is kept for the next attempt."""
    if sorted(saved.names) != sorted(names):
        return SavedState(unusable="was for other names")
    body = fetch_order(ca, saved.url)
    if body is None:
        return SavedState(unusable="is unknown to the CA")
    if sorted(i.value for i in body.identifiers or ()) != sorted(names):
        return SavedState(unusable="names other identifiers at the CA")
    if body.status not in CONTINUABLE:
        return SavedState(unusable=f"is {body.status.name}")
    now = datetime.datetime.now(datetime.UTC)
    if body.status != messages.STATUS_VALID and body.expires and body.expires <= now:
        return SavedState(unusable="has expired")
    return SavedState(body)


def fetch_order(ca: CertificateAuthority, url: str) -> messages.Order | None:
    """The order at `url`, or None when the CA says it does not exist (for us)."""
    reply = call(ca.existing_order, url, what="fetching the saved ACME order")
    return None if reply is None else reply.body
