"""One event loop per process for all probing.

Batches run in several worker threads at once (the consumer's threads). Were each to run
its own event loop, the loops would fight over the GIL on every socket call (the convoy
effect) and fall behind their schedules under load. Instead every batch hands its
coroutine to this one loop, in its own daemon thread, and waits for the outcome; the
waiting threads cost nothing. Nothing blocking may run on this loop: rows are loaded and
parsed by the caller, and results are written from the loop's worker threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _start() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    threading.Thread(target=serve, name="proxyos-health-loop", daemon=True).start()
    ready.wait()
    return loop


def probing_loop() -> asyncio.AbstractEventLoop:
    """The process's probing loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = _start()
        return _loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the probing loop and wait for its result (or exception)."""
    return asyncio.run_coroutine_threadsafe(coroutine, probing_loop()).result()
