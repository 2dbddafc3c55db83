"""One ACME order for all names of a certificate, answered through DNS-01.

publish every TXT value (grouped by challenge name, so apex and wildcard share one
name) -> wait until every authoritative nameserver serves them -> answer -> poll the
authorizations (Retry-After honoured) -> finalize with a fresh key -> download the
chain. Every value published is removed again, on success and on failure; the caller's
`journal` records each one durably first, so a crash cannot leave one behind unnoticed.

The caller's `orders` journal saves each new order (URL, names, key) as soon as the CA
created it; given that saved order, `obtain` continues it where it stopped (answers what
is still pending, finalizes a ready order, downloads a valid order's certificate), so a
crash after the CA issued never makes it issue a second certificate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from acme import challenges, messages

from .acme_errors import call, describe
from .ca import CertificateAuthority
from .errors import CertError, OrderInvalid, ProviderError
from .keys import key_pem, make_csr, new_private_key
from .order_state import saved_order_state
from .propagation import Checker, Zone
from .providers.base import Provider
from .saved_order import SavedOrder

log = logging.getLogger("proxyos.certs.order")


class Journal(Protocol):
    def published(self, fqdn: str, zone: str, value: str) -> None: ...
    def removed(self, fqdn: str, value: str) -> None: ...


class OrderJournal(Protocol):
    def ordered(self, url: str, names: list[str], key_pem: bytes) -> None: ...
    def discarded(self) -> None: ...


@dataclass
class Challenge:
    identifier: str
    authz: messages.AuthorizationResource
    challb: messages.ChallengeBody
    fqdn: str
    zone: Zone
    value: str


@dataclass
class Result:
    fullchain_pem: bytes
    key_pem: bytes
    timings: dict[str, float] = field(default_factory=dict)


def _sleep_until(next_poll: float, deadline: float) -> None:
    time.sleep(max(0.0, min(next_poll, deadline) - time.monotonic()))


class OrderFlow:
    def __init__(
        self,
        ca: CertificateAuthority,
        provider: Provider,
        checker: Checker,
        journal: Journal,
        orders: OrderJournal,
        *,
        key_type: str = "ecdsa",
        propagation_timeout: float = 300.0,
        order_timeout: float = 180.0,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        self.ca = ca
        self.provider = provider
        self.checker = checker
        self.journal = journal
        self.orders = orders
        self.key_type = key_type
        self.propagation_timeout = propagation_timeout
        self.order_timeout = order_timeout
        self.heartbeat = heartbeat
        self.timings: dict[str, float] = {}

    def obtain(
        self, names: list[str], replaces: str | None = None, saved: SavedOrder | None = None
    ) -> Result:
        """The certificate for `names`: through the `saved` order when the CA can still
        complete it, else through a new one."""
        started = time.monotonic()
        orderr, key = self._start(names, replaces, saved)
        self.heartbeat()
        try:
            pending = self._challenges(orderr)
            self.timings["order"] = time.monotonic() - started
            for round_ in self._rounds(pending):
                self._validate_round(round_)
            orderr = self._finalize(orderr)
        except OrderInvalid:
            self.orders.discarded()  # the CA will never complete it
            raise
        self.timings["total"] = time.monotonic() - started
        return Result(orderr.fullchain_pem.encode(), key_pem(key), self.timings)

    def _start(self, names: list[str], replaces: str | None, saved: SavedOrder | None):
        """(order resource with its authorizations, private key): the saved order's when
        it can be continued, else a new order's, saved before anything else happens."""
        orderr = self._resume(saved, names) if saved is not None else None
        if orderr is not None:
            key = saved.key
        else:
            key = new_private_key(self.key_type)
            orderr = self._new_order(make_csr(key, names), names, replaces)
            # From the first answered challenge on, the CA may issue: save the order first.
            self.orders.ordered(orderr.uri, names, key_pem(key))
        if orderr.body.status == messages.STATUS_PENDING:
            found = call(self.ca.authorizations, orderr.body, what="fetching the authorizations")
            orderr = orderr.update(authorizations=found)
        return orderr, key

    def _resume(self, saved: SavedOrder, names: list[str]):
        """The saved order's resource, or None (discarded) to order afresh."""
        state = saved_order_state(self.ca, saved, names)
        if state.unusable:
            log.info("%s: ordering afresh: the saved ACME order %s", names[0], state.unusable)
            self.orders.discarded()
            return None
        log.info("%s: continuing the saved ACME order (%s)", names[0], state.body.status.name)
        return messages.OrderResource(
            body=state.body, uri=saved.url, authorizations=[], csr_pem=make_csr(saved.key, names)
        )

    def _new_order(self, csr: bytes, names: list[str], replaces: str | None):
        what = "creating the ACME order"
        if replaces:
            try:
                return call(self.ca.new_order, csr, names, replaces, what=what)
            except CertError as exc:
                log.info("order naming the replaced certificate failed (%s); ordering without", exc)
        return call(self.ca.new_order, csr, names, None, what=what)

    def _challenges(self, orderr) -> list[Challenge]:
        found = []
        for authzr in orderr.authorizations:
            body = authzr.body
            if body.status == messages.STATUS_VALID:
                continue  # the CA remembers an earlier validation
            name = body.identifier.value
            challb = next(
                (c for c in body.challenges if isinstance(c.chall, challenges.DNS01)), None
            )
            if challb is None:
                raise CertError(f"the CA offered no dns-01 challenge for {name}")
            fqdn = self.checker.challenge_target(name)
            zone = self.checker.zone_of(fqdn)
            found.append(Challenge(name, authzr, challb, fqdn, zone, self.ca.txt_value(challb)))
        return found

    def _rounds(self, pending: list[Challenge]) -> list[list[Challenge]]:
        if not self.provider.single_value:
            return [pending] if pending else []
        by_name: dict[str, list[Challenge]] = {}
        for ch in pending:
            by_name.setdefault(ch.fqdn, []).append(ch)
        depth = max((len(v) for v in by_name.values()), default=0)
        return [[v[i] for v in by_name.values() if i < len(v)] for i in range(depth)]

    def _validate_round(self, round_: list[Challenge]) -> None:
        published: list[Challenge] = []
        try:
            for ch in round_:
                self.journal.published(ch.fqdn, ch.zone.name, ch.value)
                published.append(ch)
                self.provider.present(ch.fqdn, ch.zone.name, ch.value)
            t0 = time.monotonic()
            deadline = t0 + self.propagation_timeout
            by_name: dict[str, tuple[Zone, set[str]]] = {}
            for ch in round_:
                by_name.setdefault(ch.fqdn, (ch.zone, set()))[1].add(ch.value)
            for fqdn, (zone, values) in by_name.items():
                self.checker.wait(fqdn, zone, values, deadline, on_poll=self.heartbeat)
            self.timings["propagation"] = self.timings.get("propagation", 0) + time.monotonic() - t0
            self.heartbeat()
            for ch in round_:
                if ch.challb.status != messages.STATUS_PENDING:
                    continue  # answered before a crash; the CA is validating it
                call(self.ca.answer, ch.challb, what=f"answering the challenge for {ch.identifier}")
            self._poll_authorizations(round_)
        finally:
            self._cleanup(published)

    def _cleanup(self, published: list[Challenge]) -> None:
        problems = []
        for ch in published:
            try:
                self.provider.cleanup(ch.fqdn, ch.zone.name, ch.value)
                self.journal.removed(ch.fqdn, ch.value)
            except (ProviderError, CertError) as exc:
                problems.append(str(exc))
        if problems:
            log.warning(
                "could not remove challenge records (retried on the next run): %s",
                "; ".join(problems),
            )

    def _poll_authorizations(self, round_: list[Challenge]) -> None:
        deadline = time.monotonic() + self.order_timeout
        for ch in round_:
            delay = 0.05
            while True:
                reply = call(
                    self.ca.authorization, ch.authz.uri, what=f"polling the authorization of {ch.identifier}"
                )
                authz = reply.body
                if authz.status == messages.STATUS_VALID:
                    break
                if authz.status not in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                    raise self._authz_failure(ch, authz)
                if time.monotonic() >= deadline:
                    raise CertError(
                        f"the CA did not finish validating {ch.identifier} in {self.order_timeout:.0f} s"
                    )
                _sleep_until(time.monotonic() + reply.retry_after(delay), deadline)
                delay = min(delay * 2, 5.0)
                self.heartbeat()

    def _authz_failure(self, ch: Challenge, authz: messages.Authorization) -> CertError:
        for challb in authz.challenges:
            if challb.error is not None:
                problem = describe(challb.error, f"validating {ch.identifier} (TXT {ch.fqdn})")
                return OrderInvalid(str(problem), retry_at=problem.retry_at)
        return OrderInvalid(f"validating {ch.identifier}: authorization became {authz.status}")

    def _finalize(self, orderr):
        what = "finalizing the order"
        if orderr.body.status in (messages.STATUS_PROCESSING, messages.STATUS_VALID):
            reply = call(self.ca.order, orderr.uri, what=what)  # finalized already
        else:
            reply = self._post_finalize(orderr, what)
        deadline = time.monotonic() + self.order_timeout
        delay = 0.05
        while True:
            body = reply.body
            if body.status == messages.STATUS_VALID and body.certificate:
                chain = call(self.ca.certificate, body.certificate, what="downloading the certificate")
                return orderr.update(body=body, fullchain_pem=chain)
            if body.status == messages.STATUS_INVALID:
                if body.error is not None:
                    problem = describe(body.error, what)
                    raise OrderInvalid(str(problem), retry_at=problem.retry_at)
                raise OrderInvalid(f"{what}: the CA marked the order invalid")
            if body.status == messages.STATUS_READY:
                reply = call(self.ca.finalize, orderr.body, orderr.csr_pem, what=what)
                continue
            if time.monotonic() >= deadline:
                raise CertError(f"{what}: the CA did not issue within {self.order_timeout:.0f} s")
            _sleep_until(time.monotonic() + reply.retry_after(delay), deadline)
            delay = min(delay * 2, 5.0)
            self.heartbeat()
            reply = call(self.ca.order, orderr.uri, what=what)

    def _post_finalize(self, orderr, what: str):
        try:
            return call(self.ca.finalize, orderr.body, orderr.csr_pem, what=what)
        except CertError as exc:
            if "orderNotReady" not in str(exc):
                raise
            return call(self.ca.order, orderr.uri, what=what)
