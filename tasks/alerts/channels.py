"""Where notifications go: ProxyOS's `system_settings` rows `alert_webhook` (a URL) and
`alert_smtp` (JSON: host, port, secure, user, pass, from, to), read when delivering, so a
corrected setting applies to the next attempt. A bad setting is a `ChannelError` naming
it; the other channel is unaffected. The SMTP password may be stored encrypted
(`enc:v2:`/`enc:v1:`, as ProxyOS's credentials); it is decrypted here and registered for
redaction before anything can see it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.problem import Problem
from db.schema import system_settings
from tasks.certs.credentials import decrypt
from tasks.certs.errors import ConfigurationError
from tasks.redaction import remember

WEBHOOK, SMTP = "alert_webhook", "alert_smtp"
CHANNELS = {"webhook": WEBHOOK, "smtp": SMTP}


class ChannelError(Problem):
    """A channel's setting cannot be used; the message names the setting and what is wrong."""


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int
    secure: bool  # True: TLS from the start (port 465); False: STARTTLS when offered
    user: str
    from_: str
    to: tuple[str, ...]
    password: str = field(default="", repr=False)


def configured(conn: Connection) -> list[str]:
    """The channels with a non-empty setting (whether usable is decided when delivering)."""
    rows = dict(conn.execute(sa.select(system_settings.c.key, system_settings.c.value)
                             .where(system_settings.c.key.in_(CHANNELS.values()))).all())
    return [name for name, key in CHANNELS.items() if isinstance(rows.get(key), str) and rows[key].strip()]


def _setting(conn: Connection, key: str) -> str:
    value = conn.execute(sa.select(system_settings.c.value).where(system_settings.c.key == key)).scalar()
    if not isinstance(value, str) or not value.strip():
        raise ChannelError(f"{key} is not set in system_settings")
    return value.strip()


def webhook_url(conn: Connection) -> str:
    url = _setting(conn, WEBHOOK)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ChannelError(f"{WEBHOOK} in system_settings is not an http(s) URL")
    return url


def _text(config: dict, key: str, required: bool = False) -> str:
    value = config.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ChannelError(f"{SMTP} in system_settings: {key!r} is not text")
    if required and not value.strip():
        raise ChannelError(f"{SMTP} in system_settings: {key!r} is missing")
    return value.strip()


def smtp(conn: Connection, secret: str | None) -> Smtp:
    try:
        config = json.loads(_setting(conn, SMTP))
    except (ValueError, RecursionError):
        raise ChannelError(f"{SMTP} in system_settings is not JSON") from None
    if not isinstance(config, dict):
        raise ChannelError(f"{SMTP} in system_settings is not a JSON object")
    stored = config.get("pass") or ""
    if not isinstance(stored, str):
        raise ChannelError(f"{SMTP} in system_settings: 'pass' is not text")
    try:
        password = decrypt(stored, secret, f"the password of {SMTP}")
    except ConfigurationError as exc:
        raise ChannelError(str(exc)) from None
    remember(password)
    port = config.get("port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65_535:
        raise ChannelError(f"{SMTP} in system_settings: 'port' is not a number 1-65535")
    secure = config.get("secure", False)
    if not isinstance(secure, bool):
        raise ChannelError(f"{SMTP} in system_settings: 'secure' is not true or false")
    user = _text(config, "user")
    to = tuple(a.strip() for a in _text(config, "to", required=True).split(",") if a.strip())
    from_ = _text(config, "from") or user
    if not from_:
        raise ChannelError(f"{SMTP} in system_settings: neither 'from' nor 'user' is set")
    return Smtp(host=_text(config, "host", required=True), port=port, secure=secure, user=user,
                from_=from_, to=to, password=password)
