"""Collect results on the event loop and write them in batches from a worker thread:
at most `max_rows` per transaction, and no result waits longer than `max_delay`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from .state import Change
from .verdict import CheckResult

log = logging.getLogger("proxyos.health")


class ResultWriter:
    def __init__(
        self,
        write: Callable[[Sequence[CheckResult]], list[Change]],
        max_rows: int = 250,
        max_delay: float = 0.25,
    ) -> None:
        self._write = write
        self.max_rows = max_rows
        self.max_delay = max_delay
        self._pending: list[CheckResult] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self.changes: list[Change] = []
        self.errors: list[str] = []
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def add(self, result: CheckResult) -> None:
        self._pending.append(result)
        self._arrived.set()
        if len(self._pending) >= self.max_rows:
            self._full.set()

    async def close(self) -> None:
        self._closing = True
        self._arrived.set()
        self._full.set()
        if self._task:
            await self._task

    async def _loop(self) -> None:
        while True:
            await self._arrived.wait()
            if not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.max_delay)
            taken, self._pending = self._pending[: self.max_rows], self._pending[self.max_rows :]
            if len(self._pending) < self.max_rows and not self._closing:
                self._full.clear()
            if not self._pending and not self._closing:
                self._arrived.clear()
            if taken:
                await self._flush(taken)
            elif self._closing:
                return

    async def _flush(self, results: list[CheckResult]) -> None:
        try:
            changes = await asyncio.to_thread(self._write, results)
        except Exception as exc:  # recorded; the batch goes on and reports it at the end
            message = f"could not write {len(results)} results: {exc}"
            log.error("health: %s", message)
            self.errors.append(message)
            return
        self.written += len(results)
        self.changes.extend(changes)
