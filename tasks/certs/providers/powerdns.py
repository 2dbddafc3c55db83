"""PowerDNS Authoritative (HTTP API). Credentials: {"api_url", "api_key", "server_id"}
(server id optional, default `localhost`).

A PATCH with changetype REPLACE sets the whole TXT RRset, so the other values of the
name are read first and written back."""

from __future__ import annotations

from ..errors import ConfigurationError, ProviderError
from .base import RecordSetProvider

TTL = 60


class PowerDNS(RecordSetProvider):
    type = "powerdns"
    required = ("api_url", "api_key")
    public = ("api_url", "server_id")

    def __init__(self, credentials, **kwargs) -> None:
        api_url = kwargs.pop("api_url", None) or str(credentials.get("api_url") or "")
        super().__init__(credentials, api_url=api_url, **kwargs)
        if not self.api_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"DNS provider {self.name!r}: api_url must be an http(s) URL")
        self.api_url = self.api_url.removesuffix("/api/v1").removesuffix("/api")
        self.server = str(self.credentials.get("server_id") or "localhost")
        self.session.headers["X-API-Key"] = self.credentials["api_key"]

    def explain(self, response) -> str:
        try:
            return f": {response.json().get('error')}"
        except ValueError:
            return super().explain(response)

    def _zone_path(self, zone: str) -> str:
        return f"/api/v1/servers/{self.server}/zones/{zone.rstrip('.')}."

    def _values(self, fqdn: str, zone: str) -> list[str]:
        response = self.http(
            "GET", self._zone_path(zone), params={"rrset_name": fqdn + ".", "rrset_type": "TXT"}, ok=(200, 404, 422)
        )
        if response.status_code != 200:
            raise ProviderError(f"powerdns: zone {zone} not found on server {self.server}{self.explain(response)}")
        values = []
        for rrset in response.json().get("rrsets") or []:
            if rrset.get("name", "").rstrip(".").lower() == fqdn.lower() and rrset.get("type") == "TXT":
                values += [r["content"].strip('"') for r in rrset.get("records", [])]
        return values

    def _write(self, fqdn: str, zone: str, values: list[str]) -> None:
        rrset = {"name": fqdn + ".", "type": "TXT"}
        if values:
            rrset.update(
                changetype="REPLACE", ttl=TTL, records=[{"content": f'"{v}"', "disabled": False} for v in values]
            )
        else:
            rrset["changetype"] = "DELETE"
        self.http("PATCH", self._zone_path(zone), json={"rrsets": [rrset]}, ok=(200, 204))


PROVIDER = PowerDNS
