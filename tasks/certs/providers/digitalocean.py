"""DigitalOcean (API v2 domain records). Credentials: {"auth_token"}."""

from __future__ import annotations

from .base import Provider

TTL = 30  # the API's minimum


class DigitalOcean(Provider):
    type = "digitalocean"
    required = ("auth_token",)
    default_api_url = "https://api.digitalocean.com/v2"

    def __init__(self, credentials, **kwargs) -> None:
        super().__init__(credentials, **kwargs)
        self.session.headers["Authorization"] = f"Bearer {self.credentials['auth_token']}"

    def explain(self, response) -> str:
        try:
            return f": {response.json().get('message')}"
        except ValueError:
            return super().explain(response)

    def _records(self, fqdn: str, zone: str, value: str) -> list[dict]:
        found = (
            self.http("GET", f"/domains/{zone}/records", params={"type": "TXT", "name": fqdn, "per_page": 200})
            .json()
            .get("domain_records")
            or []
        )
        return [r for r in found if r.get("data") == value]

    def present(self, fqdn: str, zone: str, value: str) -> None:
        if self._records(fqdn, zone, value):
            return
        self.http(
            "POST",
            f"/domains/{zone}/records",
            ok=(201,),
            json={"type": "TXT", "name": self.relative(fqdn, zone), "data": value, "ttl": TTL},
        )

    def cleanup(self, fqdn: str, zone: str, value: str) -> None:
        for record in self._records(fqdn, zone, value):
            self.http("DELETE", f"/domains/{zone}/records/{record['id']}", ok=(204, 404))


PROVIDER = DigitalOcean
