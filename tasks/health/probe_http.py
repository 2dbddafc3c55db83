"""Probe one HTTP(S) upstream: status code, body (first 64 KiB), response time."""

from __future__ import annotations

import asyncio
import ssl
import time
from functools import lru_cache

import aiohttp

from .config import RouteCheck, Target
from .errors import describe
from .settings import BODY_LIMIT
from .verdict import UpstreamResult

USER_AGENT = "ProxyOS-health/1"


def new_session(concurrency: int) -> aiohttp.ClientSession:
    """One session per batch. Every probe opens its own connection (nothing is reused:
    a check must see a backend that stopped accepting), with no connection limit other
    than the batch's semaphore; timeouts are applied per probe."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True, ttl_dns_cache=60)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
        auto_decompress=True,
    )


@lru_cache(maxsize=1)
def insecure_context() -> ssl.SSLContext:
    """For `https-insecure` and skip-verify: encrypted, nothing verified (built once)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def read_prefix(content: aiohttp.StreamReader, limit: int = BODY_LIMIT) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def probe_http(
    session: aiohttp.ClientSession,
    check: RouteCheck,
    target: Target,
    trusted: ssl.SSLContext,
    insecure: ssl.SSLContext,
) -> UpstreamResult:
    started = time.perf_counter()
    tls: ssl.SSLContext | bool = True
    if target.tls:
        tls = trusted if target.verify_tls else insecure
    try:
        async with asyncio.timeout(check.timeout):
            async with session.get(
                target.url,
                allow_redirects=False,
                ssl=tls,
                server_hostname=target.sni,
            ) as response:
                code = response.status
                matched = None
                if check.body_regex is not None:
                    body = await read_prefix(response.content)
                    matched = await check.body_regex.matches(body)  # off the loop, in RE2
    except Exception as exc:  # every failure is a result, never a crash of the batch
        return UpstreamResult(
            target.label,
            ok=False,
            reason=describe(exc, check.timeout, target.host),
            response_time_ms=_ms(started),
        )
    elapsed = _ms(started)
    reason = None
    if code not in check.status_codes:
        reason = f"status {code} not in [{', '.join(str(c) for c in sorted(check.status_codes))}]"
    elif matched is False:
        reason = "body did not match"
    slow = None
    if reason is None and check.max_response_ms is not None and elapsed > check.max_response_ms:
        slow = f"slow: {elapsed} ms > {check.max_response_ms} ms"
    return UpstreamResult(
        target.label,
        ok=reason is None,
        response_time_ms=elapsed,
        status_code=code,
        body_matched=matched,
        reason=reason,
        slow=slow,
    )


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
