"""Cloudflare (API v4). Credentials: {"api_token"} (a token with Zone.DNS edit)."""

from __future__ import annotations

from ..errors import ProviderError
from .base import Provider

TTL = 120


class Cloudflare(Provider):
    type = "cloudflare"
    required = ("api_token",)
    default_api_url = "https://api.cloudflare.com/client/v4"

    def __init__(self, credentials, **kwargs) -> None:
        super().__init__(credentials, **kwargs)
        self.session.headers["Authorization"] = f"Bearer {self.credentials['api_token']}"
        self._zone_ids: dict[str, str] = {}

    def explain(self, response) -> str:
        try:
            errors = response.json().get("errors") or []
            return ": " + "; ".join(f"{e.get('code')} {e.get('message')}" for e in errors) if errors else ""
        except ValueError:
            return super().explain(response)

    def _zone_id(self, zone: str) -> str:
        if zone not in self._zone_ids:
            found = self.http("GET", "/zones", params={"name": zone}).json().get("result") or []
            if not found:
                raise ProviderError(
                    f"cloudflare: zone {zone} not found for DNS provider {self.name!r} "
                    "(is it in this account, and may the token read it?)"
                )
            self._zone_ids[zone] = found[0]["id"]
        return self._zone_ids[zone]

    def _records(self, zone_id: str, fqdn: str, value: str) -> list[dict]:
        result = (
            self.http("GET", f"/zones/{zone_id}/dns_records", params={"type": "TXT", "name": fqdn, "per_page": 100})
            .json()
            .get("result")
            or []
        )
        return [r for r in result if str(r.get("content", "")).strip('"') == value]

    def present(self, fqdn: str, zone: str, value: str) -> None:
        zone_id = self._zone_id(zone)
        if self._records(zone_id, fqdn, value):
            return
        self.http(
            "POST", f"/zones/{zone_id}/dns_records", json={"type": "TXT", "name": fqdn, "content": value, "ttl": TTL}
        )

    def cleanup(self, fqdn: str, zone: str, value: str) -> None:
        zone_id = self._zone_id(zone)
        for record in self._records(zone_id, fqdn, value):
            self.http("DELETE", f"/zones/{zone_id}/dns_records/{record['id']}", ok=(200, 404))


PROVIDER = Cloudflare
