"""ProxyOS's encrypted credential formats (`enc:v2:`, `enc:v1:`, plaintext JSON).

enc:v2: base64url(iv[12] || tag[16] || ciphertext), AES-256-GCM,
        key = HKDF-SHA256(PROXYOS_SECRET, salt=b"", info=b"proxyos-aes-key-v2", 32)
enc:v1: same layout, key = SHA-256(PROXYOS_SECRET)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tasks.redaction import remember

from .errors import ConfigurationError

V2, V1 = "enc:v2:", "enc:v1:"


def _key(secret: str, version: str) -> bytes:
    if version == V1:
        return hashlib.sha256(secret.encode()).digest()
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=b"proxyos-aes-key-v2")
    return hkdf.derive(secret.encode())


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encrypt(plaintext: str, secret: str, version: str = V2) -> str:
    """Encrypt as ProxyOS does (v2 unless asked otherwise)."""
    iv = os.urandom(12)
    sealed = AESGCM(_key(secret, version)).encrypt(iv, plaintext.encode(), None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return version + base64.urlsafe_b64encode(iv + tag + ciphertext).decode().rstrip("=")


def is_encrypted(stored: str) -> bool:
    return stored.startswith((V2, V1))


def decrypt(stored: str, secret: str | None, what: str) -> str:
    """The plaintext of a stored value; `what` names it in error messages."""
    for version in (V2, V1):
        if stored.startswith(version):
            break
    else:
        return stored
    if not secret:
        raise ConfigurationError(
            f"{what} is encrypted ({version[:-1]}) but PROXYOS_SECRET is not set"
        )
    try:
        raw = _b64decode(stored[len(version) :])
        iv, tag, ciphertext = raw[:12], raw[12:28], raw[28:]
        if len(iv) < 12 or len(tag) < 16:
            raise ValueError("too short")
        plain = AESGCM(_key(secret, version)).decrypt(iv, ciphertext + tag, None)
    except (InvalidTag, ValueError):
        raise ConfigurationError(
            f"{what} could not be decrypted ({version[:-1]}): PROXYOS_SECRET differs from the "
            "dashboard's, or the stored value is damaged; re-enter the credentials"
        ) from None
    return plain.decode()


def load_credentials(
    stored: str, secret: str | None, provider_name: str, public: tuple[str, ...] = ()
) -> dict[str, str]:
    """Decrypt and parse a `dns_providers.credentials` value; every value except the
    `public` ones (a nameserver address, a key name) is registered for redaction before
    anything else can see it."""
    what = f"credentials of DNS provider {provider_name!r}"
    if not isinstance(stored, str | None):
        raise ConfigurationError(f"{what} are not text (the column holds {type(stored).__name__})")
    text = decrypt(stored or "", secret, what)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ConfigurationError(f"{what} are not a JSON object") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{what} are not a JSON object")
    for key, item in value.items():
        if key not in public:
            remember(*_texts(item))
    return value


def _texts(item: object) -> list[str]:
    """Every text a credential value holds (a number or a nested value too), so none of
    it can reach a message unmasked. Iterative: the nesting may be as deep as JSON allows."""
    found, stack = [], [item]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append(str(value))
    return found
