"""Active propagation checks: find the zone of a challenge name (SOA walk), follow a CNAME
on `_acme-challenge.<name>`, and ask every authoritative nameserver of the zone directly
until each serves the expected TXT values. No fixed sleeps: polls start fast and slow
down, bounded by a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from .errors import ConfigurationError, PropagationTimeout

MAX_CNAME_HOPS = 8


@dataclass(frozen=True)
class Zone:
    name: str  # no trailing dot
    nameservers: tuple[tuple[str, str], ...]  # (host name, address)


class Checker:
    """Resolvers (host, port) for the SOA walk and NS look-ups; `nameserver_port` for the
    direct queries to authoritative servers (53 outside tests)."""

    def __init__(
        self,
        resolvers: Iterable[tuple[str, int]] = (),
        nameserver_port: int = 53,
        query_timeout: float = 3.0,
    ) -> None:
        self.resolver = dns.resolver.Resolver(configure=not resolvers)
        resolvers = list(resolvers)
        if resolvers:
            self.resolver.nameservers = [host for host, _ in resolvers]
            self.resolver.port = resolvers[0][1]
        self.resolver.lifetime = max(query_timeout * 2, 5.0)
        self.resolver.timeout = query_timeout
        self.resolver.cache = None
        self.nameserver_port = nameserver_port
        self.query_timeout = query_timeout
        self._zones: dict[str, Zone] = {}

    # --- where the record goes ---------------------------------------------------------

    def challenge_target(self, name: str) -> str:
        """`_acme-challenge.<name>`, or where its CNAME chain leads (a delegated zone)."""
        current = "_acme-challenge." + name.lstrip("*.").rstrip(".").lower()
        for _ in range(MAX_CNAME_HOPS):
            try:
                answer = self.resolver.resolve(current, "CNAME", raise_on_no_answer=False)
            except (
                dns.resolver.NXDOMAIN,
                dns.resolver.NoNameservers,
                dns.resolver.LifetimeTimeout,
            ):
                return current
            if answer.rrset is None:
                return current
            current = answer.rrset[0].target.to_text().rstrip(".").lower()
        raise ConfigurationError(
            f"CNAME chain from _acme-challenge.{name} is longer than {MAX_CNAME_HOPS}"
        )

    def zone_of(self, fqdn: str) -> Zone:
        """The zone that holds `fqdn` and the addresses of its nameservers."""
        name = dns.name.from_text(fqdn)
        tried = []
        while True:
            if name == dns.name.root:
                raise ConfigurationError(
                    f"no DNS zone found for {fqdn} (asked {self._describe_resolvers()} for the SOA "
                    f"of {', '.join(tried) or fqdn}): is the domain delegated and spelled right?"
                )
            text = name.to_text().rstrip(".")
            if text in self._zones:
                return self._zones[text]
            tried.append(text)
            try:
                answer = self.resolver.resolve(name, "SOA", raise_on_no_answer=False)
                soa = answer.rrset
                if soa is not None and soa.name == name:
                    zone = Zone(text, tuple(self._nameservers(name)))
                    self._zones[text] = zone
                    return zone
            except dns.resolver.NXDOMAIN:
                pass
            except (dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
                raise ConfigurationError(
                    f"DNS look-up of the zone of {fqdn} failed at {text}: {type(exc).__name__} "
                    f"(resolvers {self._describe_resolvers()})"
                ) from None
            name = name.parent()

    def _nameservers(self, zone: dns.name.Name) -> list[tuple[str, str]]:
        found = []
        try:
            answer = self.resolver.resolve(zone, "NS")
        except dns.exception.DNSException as exc:
            raise ConfigurationError(
                f"no NS records for zone {zone.to_text()}: {type(exc).__name__}"
            ) from None
        for record in answer:
            host = record.target.to_text()
            for rdtype in ("A", "AAAA"):
                try:
                    found += [
                        (host.rstrip("."), a.to_text()) for a in self.resolver.resolve(host, rdtype)
                    ]
                except dns.exception.DNSException:
                    continue
        if not found:
            raise ConfigurationError(f"the nameservers of zone {zone.to_text()} have no addresses")
        return found

    def _describe_resolvers(self) -> str:
        return ", ".join(f"{h}:{self.resolver.port}" for h in self.resolver.nameservers)

    # --- is it there yet ---------------------------------------------------------------

    def served_values(self, address: str, fqdn: str) -> set[str] | None:
        """The TXT values `address` serves for `fqdn` (None: no usable answer)."""
        query = dns.message.make_query(fqdn, "TXT")
        query.flags &= ~dns.flags.RD
        try:
            response = dns.query.udp(
                query, address, port=self.nameserver_port, timeout=self.query_timeout
            )
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(
                    query, address, port=self.nameserver_port, timeout=self.query_timeout
                )
        except (OSError, dns.exception.DNSException):
            return None
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return None
        values: set[str] = set()
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rdata in rrset:
                    values.add(b"".join(rdata.strings).decode())
        return values

    def wait(
        self,
        fqdn: str,
        zone: Zone,
        values: set[str],
        deadline: float,
        on_poll: Callable[[], None] | None = None,
        absent: bool = False,
    ) -> None:
        """Return once every nameserver of `zone` serves all `values` at `fqdn` (or none of
        them, with `absent`); raise PropagationTimeout naming the laggards at `deadline`."""
        pending = dict(zone.nameservers and {addr: host for host, addr in zone.nameservers})
        delay = 0.05
        while True:
            for address in list(pending):
                served = self.served_values(address, fqdn)
                if served is not None and (not (values & served) if absent else values <= served):
                    del pending[address]
            if not pending:
                return
            if on_poll:
                on_poll()
            if time.monotonic() >= deadline:
                laggards = ", ".join(f"{host} ({addr})" for addr, host in pending.items())
                raise PropagationTimeout(
                    f"TXT record {fqdn} was still not served by nameserver {laggards} after the "
                    "propagation timeout (PROXYOS_DNS_PROPAGATION_TIMEOUT): check that the DNS "
                    "provider updates the zone these servers serve"
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.6, 2.0)
