"""What the certificate worker is configured with (read from the environment by the job
module, which checks every value at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class CertSettings:
    directory: str = LETSENCRYPT
    email: str = ""
    ca_bundle: str | None = None
    eab_kid: str | None = None
    eab_hmac_key: str | None = field(default=None, repr=False)
    cert_dir: Path = Path("./data/certs")
    resolvers: tuple[tuple[str, int], ...] = ()  # empty: the system's resolvers
    nameserver_port: int = 53
    key_type: str = "ecdsa"  # ecdsa (P-256) | rsa (2048)
    deploy_hook: str | None = None
    secret: str | None = field(default=None, repr=False)
    propagation_timeout: float = 300.0
    order_timeout: float = 180.0
    concurrency: int = 4
    lease_seconds: float = 900.0
    weekly_limit: int = 50
    api_urls: dict[str, str] = field(default_factory=dict)  # provider type -> base URL
    caddy_admin_url: str | None = None  # http://host:port or unix//path: certificates are loaded there

    def directory_for(self, tls_mode: str | None) -> str:
        if tls_mode == "auto-staging" and self.directory == LETSENCRYPT:
            return LETSENCRYPT_STAGING
        return self.directory

    @property
    def ca_label(self) -> str:
        """cert_issuance_log.provider / acme_accounts.provider for this directory."""
        if "letsencrypt.org" in self.directory:
            return "letsencrypt"
        if "zerossl" in self.directory:
            return "zerossl"
        return "custom"
