"""Who may make a request: the failure throttle (429), the API key (401), its scopes (403)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.engine import Connection

from . import scopes
from .app_keys import KEYS, THROTTLE
from .auth import ApiKey, bearer_token
from .errors import fail

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="proxyos-workers"'}


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def check_throttle(request: web.Request) -> None:
    """429 while the client's address is slowed down."""
    address = client_address(request)
    wait = request.app[THROTTLE].retry_after(address)
    if wait is not None:
        fail(429, f"too many failed authentications from {address}; try again in {wait} s",
             {"Retry-After": str(wait)})


def authorize(app: web.Application, header: str | None, address: str, needed: str | None,
              conn: Connection | None = None) -> ApiKey:
    """Blocking (reads the database, on `conn` when given): the key in the Authorization
    `header`, if it may do what needs scope `needed` (None: any scope)."""
    token = bearer_token(header)
    key = app[KEYS].resolve(token, conn) if token else None
    if key is None:
        app[THROTTLE].failed(address)
        what = "is not a valid, unexpired ProxyOS API key" if token else "is missing"
        fail(401, f"the API key (Authorization: Bearer pxos_...) {what}", CHALLENGE)
    if not scopes.allows(key.scopes, needed):
        wanted = f"scope {needed!r} or 'admin'" if needed else "a scope"
        fail(403, f"API key {key.name!r} lacks {wanted} (it has: {', '.join(sorted(key.scopes)) or 'none'})")
    return key


async def authenticate(request: web.Request, needed: str | None) -> ApiKey:
    """The request's key, if it may do what needs scope `needed` (None: any scope)."""
    check_throttle(request)
    return await asyncio.to_thread(authorize, request.app, request.headers.get("Authorization"),
                                   client_address(request), needed)
