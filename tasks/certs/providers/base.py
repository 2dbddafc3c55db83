"""The DNS provider interface: present a TXT value, clean it up. Nothing else.

A provider module defines one subclass of `Provider` with a unique `type` (the
`dns_providers.type` value); `providers.get(type)` finds it. The shared propagation
checker, not the provider, decides when a value is visible.
"""

from __future__ import annotations

import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import requests

from tasks.redaction import remember

from ..errors import ConfigurationError, ProviderError

HTTP_TIMEOUT = 30.0


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """`url` without its `user:pass@` (so no message can show them) and the basic-auth
    pair it carried, registered for redaction in both its written and decoded forms."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url, None
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    remember(userinfo, password, urllib.parse.unquote(password), urllib.parse.unquote(userinfo))
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return bare, (urllib.parse.unquote(user), urllib.parse.unquote(password))


class Provider(ABC):
    type: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ()
    public: ClassVar[tuple[str, ...]] = ()  # credential keys that are not secret
    # A provider that holds only one TXT value per name gets its values one at a time.
    single_value: ClassVar[bool] = False
    default_api_url: ClassVar[str | None] = None

    def __init__(
        self,
        credentials: Mapping[str, Any],
        *,
        name: str = "",
        api_url: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.name = name or self.type
        missing = [key for key in self.required if not credentials.get(key)]
        if missing:
            raise ConfigurationError(
                f"DNS provider {self.name!r} ({self.type}) lacks credential " + ", ".join(repr(m) for m in missing)
            )
        self.credentials = dict(credentials)
        self.session = session or requests.Session()
        self.api_url, auth = split_userinfo((api_url or self.default_api_url or "").rstrip("/"))
        if auth:
            self.session.auth = auth

    @abstractmethod
    def present(self, fqdn: str, zone: str, value: str) -> None:
        """Add TXT `value` at `fqdn` (absolute, no trailing dot) in `zone`, keeping others."""

    @abstractmethod
    def cleanup(self, fqdn: str, zone: str, value: str) -> None:
        """Remove TXT `value` at `fqdn`; other values stay; absent is not an error."""

    # --- helpers for the HTTP-API providers -------------------------------------------

    def relative(self, fqdn: str, zone: str, apex: str = "@") -> str:
        fqdn, zone = fqdn.rstrip(".").lower(), zone.rstrip(".").lower()
        if fqdn == zone:
            return apex
        if not fqdn.endswith("." + zone):
            raise ProviderError(f"{fqdn} is not inside zone {zone}")
        return fqdn[: -len(zone) - 1]

    def http(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs) -> requests.Response:
        """One API call; a failure becomes a ProviderError naming the call and the
        provider's own explanation (never the request, which carries credentials)."""
        url = self.api_url + path
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            raise ProviderError(f"{self.type} API at {self.api_url} unreachable ({type(exc).__name__})") from None
        if response.status_code not in ok:
            raise ProviderError(
                f"{self.type} API {method} {path.split('?')[0]} failed: HTTP {response.status_code}"
                + self.explain(response)
                + (
                    " (check the credentials of DNS provider " + repr(self.name) + ")"
                    if response.status_code in (401, 403)
                    else ""
                )
            )
        return response

    def explain(self, response: requests.Response) -> str:
        text = response.text.strip().replace("\n", " ")
        return f": {text[:300]}" if text else ""


class RecordSetProvider(Provider):
    """For APIs that replace all TXT values of a name at once: present and clean up read
    the values, add or remove one, and write the set back."""

    @abstractmethod
    def _values(self, fqdn: str, zone: str) -> list[str]: ...

    @abstractmethod
    def _write(self, fqdn: str, zone: str, values: list[str]) -> None: ...

    def present(self, fqdn: str, zone: str, value: str) -> None:
        values = self._values(fqdn, zone)
        if value not in values:
            self._write(fqdn, zone, values + [value])

    def cleanup(self, fqdn: str, zone: str, value: str) -> None:
        values = self._values(fqdn, zone)
        if value in values:
            self._write(fqdn, zone, [v for v in values if v != value])
