"""Ids of the `health_checks` rows the workers write, told apart from ProxyOS's own.

ProxyOS's health checker writes the same table with random nanoid ids. Ours have the
same shape (21 URL-safe characters) but their last 4 characters are a digest of the
first 17, so `tasks.other_writers` can tell which rows someone else wrote without a
column of its own. A random id passes the check with odds of 1 in 2^24.
"""

from __future__ import annotations

import base64
import hashlib

from db.sql import new_id

_HEAD = 17
_SALT = b"proxyos-workers/health_checks/"


def _digest(head: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(_SALT + head.encode()).digest()[:3]).decode()


def new_check_id() -> str:
    head = new_id(_HEAD)
    return head + _digest(head)


def is_workers_check_id(value: str) -> bool:
    return len(value) == _HEAD + 4 and value[_HEAD:] == _digest(value[:_HEAD])
