"""Probe a TCP upstream (connect) or a UDP one (best effort: a connected UDP socket hears
an ICMP port-unreachable as `connection refused`; silence counts as reachable)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from .config import Target
from .errors import describe
from .verdict import UpstreamResult


async def probe_tcp(target: Target, timeout: float) -> UpstreamResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(target.host, target.port)
    except Exception as exc:
        return UpstreamResult(
            target.label,
            ok=False,
            reason=describe(exc, timeout, target.host),
            response_time_ms=_ms(started),
        )
    elapsed = _ms(started)
    writer.close()
    with contextlib.suppress(Exception):  # it passed; a slow close is the peer's business
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return UpstreamResult(target.label, ok=True, response_time_ms=elapsed)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.outcome: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.outcome.done():
            self.outcome.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if not self.outcome.done():
            self.outcome.set_result(exc)


async def probe_udp(target: Target, timeout: float, wait: float) -> UpstreamResult:
    """Send one datagram (a zero byte) and listen `wait` seconds for an answer or an ICMP error."""
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, listener = await loop.create_datagram_endpoint(
                _Listener, remote_addr=(target.host, target.port)
            )
    except Exception as exc:
        return UpstreamResult(target.label, ok=False, reason=describe(exc, timeout, target.host))
    try:
        transport.sendto(b"\0")  # asyncio sends nothing for an empty datagram
        try:
            error = await asyncio.wait_for(asyncio.shield(listener.outcome), min(wait, timeout))
        except TimeoutError:  # silence: nothing refused it, and there is no time to report
            return UpstreamResult(target.label, ok=True)
    finally:
        transport.close()
    if error is not None:
        return UpstreamResult(
            target.label,
            ok=False,
            reason=describe(error, timeout, target.host),
            response_time_ms=_ms(started),
        )
    return UpstreamResult(target.label, ok=True, response_time_ms=_ms(started))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
