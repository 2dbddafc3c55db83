"""RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS).

Credentials: {"nameserver": "192.0.2.1", "port": 53, "tsig_key": "name",
"tsig_secret": "base64", "tsig_algorithm": "hmac-sha256"} (port, algorithm optional).
"""

from __future__ import annotations

import binascii

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update

from ..errors import ConfigurationError, ProviderError
from .base import Provider

TTL = 60
ALGORITHMS = ("hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224", "hmac-sha1", "hmac-md5")


class RFC2136(Provider):
    type = "rfc2136"
    required = ("nameserver", "tsig_key", "tsig_secret")
    public = ("nameserver", "port", "tsig_key", "tsig_algorithm")

    def __init__(self, credentials, **kwargs) -> None:
        super().__init__(credentials, **kwargs)
        algorithm = str(self.credentials.get("tsig_algorithm") or "hmac-sha256").lower().rstrip(".")
        if algorithm not in ALGORITHMS:
            raise ConfigurationError(
                f"DNS provider {self.name!r}: tsig_algorithm {algorithm!r} is not one of " + ", ".join(ALGORITHMS)
            )
        try:
            self.port = int(self.credentials.get("port") or 53)
            self.keyring = dns.tsigkeyring.from_text(
                {str(self.credentials["tsig_key"]): str(self.credentials["tsig_secret"])}
            )
        except (ValueError, binascii.Error, dns.exception.DNSException):
            raise ConfigurationError(
                f"DNS provider {self.name!r}: tsig_secret is not valid base64 or port is not a number"
            ) from None
        self.key_name = dns.name.from_text(str(self.credentials["tsig_key"]))
        self.algorithm = dns.name.from_text(algorithm)
        self.nameserver = str(self.credentials["nameserver"])

    def _send(self, zone: str, fqdn: str, value: str, add: bool) -> None:
        update = dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=self.key_name, keyalgorithm=self.algorithm
        )
        if add:
            update.add(fqdn + ".", TTL, "TXT", _quoted(value))
        else:
            update.delete(fqdn + ".", "TXT", _quoted(value))
        where = f"{self.nameserver}:{self.port}"
        try:
            response = dns.query.tcp(update, self.nameserver, port=self.port, timeout=10)
        except dns.tsig.PeerError as exc:
            raise ProviderError(
                f"nameserver {where} rejected the TSIG signature of key {self.key_name.to_text()} "
                f"({type(exc).__name__}): check tsig_secret and tsig_algorithm of DNS provider "
                f"{self.name!r}"
            ) from None
        except (OSError, dns.exception.DNSException) as exc:
            raise ProviderError(
                f"dynamic update of zone {zone} at {where} failed: {type(exc).__name__}"
                + (f" {exc}" if isinstance(exc, OSError) else "")
            ) from None
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = {
                dns.rcode.NOTAUTH: "the server is not authoritative for the zone or refused the TSIG key",
                dns.rcode.REFUSED: "the server does not allow this key to update the zone",
                dns.rcode.NOTZONE: "the name is not inside the zone",
                dns.rcode.SERVFAIL: "the server failed to apply the update",
            }.get(rcode, "")
            raise ProviderError(
                f"dynamic update of zone {zone} at {where} answered {dns.rcode.to_text(rcode)}"
                + (f": {hint}" if hint else "")
            )

    def present(self, fqdn: str, zone: str, value: str) -> None:
        self._send(zone, fqdn, value, add=True)

    def cleanup(self, fqdn: str, zone: str, value: str) -> None:
        self._send(zone, fqdn, value, add=False)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


PROVIDER = RFC2136
