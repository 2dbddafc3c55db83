"""GoDaddy (Domains API v1). Credentials: {"api_token", "api_secret"} (key and secret).

The API sets all TXT values of a name at once (PUT), so adding or removing one value
reads the others first and writes them back."""

from __future__ import annotations

from urllib.parse import quote

from .base import RecordSetProvider

TTL = 600  # the API's minimum


class GoDaddy(RecordSetProvider):
    type = "godaddy"
    required = ("api_token", "api_secret")
    default_api_url = "https://api.godaddy.com"

    def __init__(self, credentials, **kwargs) -> None:
        super().__init__(credentials, **kwargs)
        key, secret = self.credentials["api_token"], self.credentials["api_secret"]
        self.session.headers["Authorization"] = f"sso-key {key}:{secret}"

    def explain(self, response) -> str:
        try:
            body = response.json()
            return f": {body.get('code')} {body.get('message')}"
        except ValueError:
            return super().explain(response)

    def _path(self, fqdn: str, zone: str) -> str:
        return f"/v1/domains/{zone}/records/TXT/{quote(self.relative(fqdn, zone), safe='@')}"

    def _values(self, fqdn: str, zone: str) -> list[str]:
        response = self.http("GET", self._path(fqdn, zone), ok=(200, 404))
        return [r["data"] for r in response.json()] if response.status_code == 200 else []

    def _write(self, fqdn: str, zone: str, values: list[str]) -> None:
        if values:
            self.http("PUT", self._path(fqdn, zone), json=[{"data": v, "ttl": TTL} for v in values])
        else:
            self.http("DELETE", self._path(fqdn, zone), ok=(200, 204, 404))


PROVIDER = GoDaddy
