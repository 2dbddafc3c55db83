"""The CA behind one adapter: `CertificateAuthority` wraps the `acme` library's client
(ClientV2 over ClientNetwork) and is the only module that calls into it. The library has
no public way to order with RFC 9773's `replaces`, to POST-as-GET a URL or to read an
answer's Retry-After, so those use its private members here and nowhere else.

Failures are the library's exceptions; callers turn them into CertErrors a person can
act on with `acme_errors.call`, which also retries a `badNonce`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import josepy as jose
import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography import x509

USER_AGENT = "proxyos-workers (acme-python)"
ARI_TIMEOUT = 30  # seconds
# The CA no longer knows an order (Pebble forgets every order when it restarts), or it is
# not this account's: answers that will not change on a retry.
GONE_STATUSES = (403, 404, 410)
GONE_CODES = ("malformed", "unauthorized")

Body = TypeVar("Body", messages.Order, messages.Authorization)


class NewOrderWithReplaces(messages.NewOrder):
    """newOrder with RFC 9773's `replaces` (the ARI certificate id it renews)."""

    replaces: str | None = jose.field("replaces", omitempty=True)


@dataclass(frozen=True)
class Reply(Generic[Body]):
    """A resource as the CA sent it. The body is read when asked for, so that an answer
    that is not the resource fails where it is used, not inside the request."""

    kind: type[Body]
    response: requests.Response = field(repr=False)

    @property
    def body(self) -> Body:
        return self.kind.from_json(self.response.json())

    def retry_after(self, fallback: float) -> float:
        """Seconds to wait before asking again: the CA's Retry-After, else `fallback`."""
        if self.response.headers.get("Retry-After") is None:
            return fallback
        when = acme_client.ClientV2.retry_after(self.response, int(fallback) or 1)
        return max(0.0, (when - datetime.datetime.now()).total_seconds())


def _network(key: jose.JWK, verify: bool | str, account=None) -> acme_client.ClientNetwork:
    return acme_client.ClientNetwork(
        key, account=account, alg=jose.ES256, verify_ssl=verify, user_agent=USER_AGENT
    )


class CertificateAuthority:
    """One connection to an ACME CA under one account key. Not shared between threads:
    nonces are per connection."""

    def __init__(self, client: acme_client.ClientV2, key: jose.JWK, verify: bool | str) -> None:
        self._client, self._key, self._verify = client, key, verify

    @classmethod
    def open(cls, directory_url: str, key: jose.JWK, verify: bool | str) -> CertificateAuthority:
        """Read the CA's directory, before the account is known (see `register`)."""
        net = _network(key, verify)
        directory = acme_client.ClientV2.get_directory(directory_url, net)
        return cls(acme_client.ClientV2(directory, net), key, verify)

    @classmethod
    def for_account(
        cls,
        directory: messages.Directory,
        key: jose.JWK,
        account: messages.RegistrationResource,
        verify: bool | str,
    ) -> CertificateAuthority:
        """A connection of a registered account, with the directory read before."""
        return cls(acme_client.ClientV2(directory, _network(key, verify, account)), key, verify)

    @property
    def directory(self) -> messages.Directory:
        return self._client.directory

    @property
    def offers_ari(self) -> bool:
        return "renewalInfo" in self.directory.to_partial_json()

    def external_account_required(self) -> bool:
        return bool(self._client.external_account_required())

    def register(self, registration: messages.NewRegistration) -> messages.RegistrationResource:
        """newAccount with our key: creates the account, or finds the existing one (RFC
        8555 7.3.1), so a lost account URI or a CA that forgot us is never a problem."""
        try:
            return self._client.new_account(registration)
        except acme_errors.ConflictError as exc:
            regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            self._client.net.account = regr
            return regr

    def new_order(self, csr_pem: bytes, names: list[str], replaces: str | None) -> messages.OrderResource:
        """The new order, without its authorizations: fetching them again after a failure
        must not post newOrder again (see `authorizations`)."""
        body = NewOrderWithReplaces(
            identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names],
            replaces=replaces,
        )
        response = self._client._post(self.directory["newOrder"], body)  # noqa: SLF001
        return messages.OrderResource(
            body=messages.Order.from_json(response.json()),
            uri=response.headers.get("Location"),
            authorizations=[],
            csr_pem=csr_pem,
        )

    def order(self, url: str) -> Reply[messages.Order]:
        return Reply(messages.Order, self._post_as_get(url))

    def existing_order(self, url: str) -> Reply[messages.Order] | None:
        """The order at `url`, or None when the CA says it does not exist (for us)."""
        try:
            return self.order(url)
        except acme_errors.ClientError as exc:
            if _http_status(exc) in GONE_STATUSES:
                return None
            raise
        except messages.Error as exc:
            if exc.code in GONE_CODES:
                return None
            raise

    def authorizations(self, order: messages.Order) -> list[messages.AuthorizationResource]:
        return [
            self._client._authzr_from_response(self._post_as_get(url), uri=url)  # noqa: SLF001
            for url in order.authorizations
        ]

    def authorization(self, url: str) -> Reply[messages.Authorization]:
        return Reply(messages.Authorization, self._post_as_get(url))

    def txt_value(self, challb: messages.ChallengeBody) -> str:
        """The TXT value that answers a dns-01 challenge for this account."""
        return challb.chall.validation(self._key)

    def answer(self, challb: messages.ChallengeBody) -> None:
        """Tell the CA the challenge is ready to be validated."""
        self._client.answer_challenge(challb, challb.chall.response(self._key))

    def finalize(self, order: messages.Order, csr_pem: bytes) -> Reply[messages.Order]:
        csr = messages.CertificateRequest(csr=x509.load_pem_x509_csr(csr_pem))
        return Reply(messages.Order, self._client._post(order.finalize, csr))  # noqa: SLF001

    def certificate(self, url: str) -> str:
        """The issued chain (PEM) at a valid order's certificate URL."""
        return self._post_as_get(url).text

    def renewal_info(self, ari_cert_id: str) -> requests.Response | None:
        """GET <renewalInfo>/<id> (RFC 9773), checked for an HTTP error status; None when
        the CA names no renewalInfo."""
        base = self.directory.to_partial_json().get("renewalInfo")
        if not base:
            return None
        response = requests.get(f"{base.rstrip('/')}/{ari_cert_id}", timeout=ARI_TIMEOUT, verify=self._verify)
        response.raise_for_status()
        return response

    def _post_as_get(self, url: str) -> requests.Response:
        return self._client._post_as_get(url)  # noqa: SLF001 - the library has no public POST-as-GET


def _http_status(exc: acme_errors.ClientError) -> int | None:
    found = exc.args[0] if exc.args else None
    if isinstance(found, tuple) and found:
        found = found[0]
    return getattr(found, "status_code", None)
