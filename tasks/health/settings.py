"""The health checker's knobs. The worker reads them from the environment; tests and the
benchmark build them directly."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_STATUS_CODES = frozenset({200, 201, 204, 301, 302})  # as ProxyOS accepts
BODY_LIMIT = 64 * 1024  # the body regex sees at most this many bytes
MIN_INTERVAL = 5.0  # the dispatcher's period: no route is checked more often than this
MAX_INTERVAL = 86_400  # a route's health_check_interval, at most (one day)


@dataclass(frozen=True)
class HealthSettings:
    timeout: float = 5.0  # HTTP(S)/TCP timeout per upstream, capped by the route's interval
    rise: int = 2  # consecutive results needed to move to a better status
    fall: int = 3  # consecutive results needed to move to a worse status
    fast_interval: float = 5.0  # re-check this soon while a transition is pending; 0: off
    stream_interval: float = 30.0
    concurrency: int = 256  # probes in flight at once in one batch
    batch_size: int = 2000  # routes + streams per batch task
    dispatch_every: float = MIN_INTERVAL  # the dispatcher's period
    ca_file: str | None = None  # extra CA bundle trusted by `https-trusted` checks
    udp_wait: float = 1.0  # how long a UDP check waits for an ICMP port-unreachable
    write_rows: int = 250  # results per write transaction, at most
    write_delay: float = 0.25  # seconds a result may wait to be written with others

    @property
    def lookahead(self) -> float:
        """How far ahead the dispatcher claims checks: one period plus a margin for a late
        dispatcher run. A batch waits until each check's due time before probing."""
        return self.dispatch_every + 2.0

    def fast_for(self, interval: float) -> float:
        """The fast re-check interval of a target checked every `interval` seconds (0: no
        fast re-checks): at least the dispatcher's period (it cannot claim sooner) and never
        longer than the target's own interval."""
        if self.fast_interval <= 0:
            return 0.0
        return min(max(self.fast_interval, self.dispatch_every), interval)

    @property
    def history(self) -> int:
        return max(self.rise, self.fall)

    @property
    def trusted_context(self) -> ssl.SSLContext:
        """TLS context of `https-trusted` checks: the system's CAs plus `ca_file`."""
        return _trusted_context(self.ca_file)


@lru_cache(maxsize=8)
def _trusted_context(ca_file: str | None) -> ssl.SSLContext:
    """Built once per CA file: loading the system's CAs costs milliseconds of CPU."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
