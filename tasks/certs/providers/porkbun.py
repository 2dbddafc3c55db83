"""Porkbun (JSON API v3). Credentials: {"api_key", "api_secret"} (sent in the body)."""

from __future__ import annotations

from ..errors import ProviderError
from .base import Provider

TTL = "600"  # the API's minimum


class Porkbun(Provider):
    type = "porkbun"
    required = ("api_key", "api_secret")
    default_api_url = "https://api.porkbun.com/api/json/v3"

    def _auth(self, **fields) -> dict:
        return {"apikey": self.credentials["api_key"], "secretapikey": self.credentials["api_secret"], **fields}

    def explain(self, response) -> str:
        try:
            return f": {response.json().get('message')}"
        except ValueError:
            return super().explain(response)

    def _call(self, path: str, **fields) -> dict:
        body = self.http("POST", path, json=self._auth(**fields), ok=(200, 400, 403)).json()
        if body.get("status") != "SUCCESS":
            raise ProviderError(
                f"porkbun API {path.split('/')[2]} for {path.split('/')[3]} failed: "
                f"{body.get('message', 'no message')} "
                f"(check the credentials of DNS provider {self.name!r} and that API access is on "
                "for the domain)"
            )
        return body

    def _records(self, fqdn: str, zone: str, value: str) -> list[dict]:
        sub = self.relative(fqdn, zone, apex="")
        records = self._call(f"/dns/retrieveByNameType/{zone}/TXT/{sub}".rstrip("/")).get("records") or []
        return [r for r in records if r.get("content") == value]

    def present(self, fqdn: str, zone: str, value: str) -> None:
        if self._records(fqdn, zone, value):
            return
        self._call(f"/dns/create/{zone}", name=self.relative(fqdn, zone, apex=""), type="TXT", content=value, ttl=TTL)

    def cleanup(self, fqdn: str, zone: str, value: str) -> None:
        for record in self._records(fqdn, zone, value):
            self._call(f"/dns/delete/{zone}/{record['id']}")


PROVIDER = Porkbun
