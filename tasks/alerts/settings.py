"""The alerts' knobs. The worker reads them from the environment (workers/settings/alerts.py);
tests build them directly."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlertSettings:
    secret: str | None = None  # PROXYOS_SECRET: decrypts an encrypted SMTP password
    webhook_secret: str | None = None  # signs webhook bodies (HMAC-SHA256) when set
    timeout: float = 10.0  # seconds per delivery attempt (ProxyOS's webhook timeout)
    retry_hours: float = 24.0  # a notification not delivered by then is given up
    backoff: float = 5.0  # seconds before the second attempt; doubled after each
    backoff_max: float = 1800.0  # the longest wait between two attempts
    lease: float = 60.0  # how long a claimed notification is ours before another may take it
    batch: int = 50  # notifications claimed per run, at most
    ca_file: str | None = None  # extra CAs trusted for the webhook and SMTP TLS

    def delay(self, attempts: int) -> float:
        """Seconds to wait after `attempts` failed attempts (exponential)."""
        return min(self.backoff * 2 ** max(attempts - 1, 0), self.backoff_max)
