"""Errors a person can act on. Their messages name what failed and what to check, and
never carry a secret (they end up in `certificates.last_error` and `task_runs`)."""

from __future__ import annotations

from db.problem import Problem


class CertError(Problem):
    """One certificate could not be issued; `retry_at` is a CA-given earliest retry."""

    def __init__(self, message: str, *, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class ConfigurationError(CertError):
    """The DNS provider row or its credentials are unusable."""


class ProviderError(CertError):
    """The DNS provider refused or failed to change a record."""


class PropagationTimeout(CertError):
    """A nameserver did not serve the challenge value in time."""


class HeldBack(CertError):
    """Issuing now would exceed a CA rate limit; not a failure, a postponement."""


class LeaseLost(CertError):
    """Another worker took over this certificate (our lease expired)."""


class OrderInvalid(CertError):
    """The CA made the order (or one of its authorizations) invalid: it can never be
    completed, so its saved record is dropped and the next attempt orders afresh."""
