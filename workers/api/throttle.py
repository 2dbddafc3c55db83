"""Slowing down guessing: after `allowed` failed authentications from one address within
`window_s` seconds, every request from it is answered 429 (with Retry-After) until the
oldest of those failures is older than the window. Kept in this process's memory, for at
most `max_addresses` addresses (the least recently failing are forgotten first)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureThrottle:
    def __init__(self, allowed: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 10_000) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self._clock = clock
        self._max = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> int | None:
        """Whole seconds `address` must wait, or None when it may try."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if times is None or len(times) < self.allowed:
                return None
            return max(1, math.ceil(times[-self.allowed] + self.window_s - now))

    def failed(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            times = self._recent(address, now) or deque(maxlen=self.allowed)
            times.append(now)
            self._failures[address] = times
            self._failures.move_to_end(address)
            while len(self._failures) > self._max:
                self._failures.popitem(last=False)
