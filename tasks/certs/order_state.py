"""What the CA says about an existing order: POST-as-GET of the order and of its
authorizations, and whether a saved order can be continued."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages

from .acme_errors import call
from .saved_order import SavedOrder

# The CA no longer knows the order (Pebble forgets every order when it restarts), or it
# is not this account's: answers that will not change on a retry.
GONE_STATUSES = (403, 404, 410)
GONE_CODES = ("malformed", "unauthorized")
CONTINUABLE = (
    messages.STATUS_PENDING,
    messages.STATUS_READY,
    messages.STATUS_PROCESSING,
    messages.STATUS_VALID,
)


def post_as_get(client: acme_client.ClientV2, url: str):
    return client._post_as_get(url)  # noqa: SLF001 - the library has no public POST-as-GET


def fetch_authorizations(
    client: acme_client.ClientV2, order: messages.Order
) -> list[messages.AuthorizationResource]:
    return [
        client._authzr_from_response(post_as_get(client, url), uri=url)  # noqa: SLF001
        for url in order.authorizations
    ]


@dataclass
class SavedState:
    body: messages.Order | None = None
    unusable: str | None = None  # why the order cannot be continued


def saved_order_state(
    client: acme_client.ClientV2, saved: SavedOrder, names: list[str]
) -> SavedState:
    """The saved order as the CA has it now. A CertError (CA unreachable, server error)
    passes: the order may still be good, so it is kept for the next attempt."""
    if sorted(saved.names) != sorted(names):
        return SavedState(unusable="was for other names")
    body = fetch_order(client, saved.url)
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


def fetch_order(client: acme_client.ClientV2, url: str) -> messages.Order | None:
    """The order at `url`, or None when the CA says it does not exist (for us)."""
    response = call(_order_or_none, client, url, what="fetching the saved ACME order")
    return None if response is None else messages.Order.from_json(response.json())


def _order_or_none(client: acme_client.ClientV2, url: str):
    try:
        return post_as_get(client, url)
    except acme_errors.ClientError as exc:
        if _http_status(exc) in GONE_STATUSES:
            return None
        raise
    except messages.Error as exc:
        if exc.code in GONE_CODES:
            return None
        raise


def _http_status(exc: acme_errors.ClientError) -> int | None:
    found = exc.args[0] if exc.args else None
    if isinstance(found, tuple) and found:
        found = found[0]
    return getattr(found, "status_code", None)
