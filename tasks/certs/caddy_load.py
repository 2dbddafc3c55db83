"""The certificates loaded into Caddy: the list at `apps/tls/certificates/load_pem`,
entries `{"certificate": PEM, "key": PEM, "tags": [...]}` as ProxyOS's `loadCustomCert`
writes them.

Caddy 2.6 creates a path with PUT (which fails with "key already exists" once it is
there: ProxyOS's GET-then-PUT fails from the second certificate on) and replaces it with
PATCH (which fails with "key does not exist" before). So the list is read, the new list
computed, and written with PATCH and the read's ETag as `If-Match` when the list exists,
with PUT when it does not; a 412 or a "key already exists" means another writer came in
between, and the whole read-compute-write is done again. Every other entry is kept
exactly as it was read; nothing restarts (Caddy swaps its configuration gracefully)."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509

from .caddy_admin import AdminClient, CaddyError, Response

LOAD_PEM = "/config/apps/tls/certificates/load_pem"
TAG = "proxyos-workers"
ATTEMPTS = 8  # read-compute-write rounds lost to other writers before giving up this time


class Conflict(CaddyError):
    """Another writer changed the list between our read and our write."""


@dataclass(frozen=True)
class Pem:
    """One certificate the workers want in Caddy."""

    cert_id: str
    names: frozenset[str]
    fullchain: str
    key: str = field(repr=False)
    fingerprint: str  # SHA-256 of the leaf's DER, hex
    serial: str  # the leaf's serial number, hex

    def entry(self) -> dict:
        return {"certificate": self.fullchain, "key": self.key, "tags": [TAG, f"{TAG}:{self.cert_id}"]}


def leaf(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def fingerprint_of(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def dns_names(cert: x509.Certificate) -> frozenset[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName))


@dataclass(frozen=True)
class Loaded:
    """One entry as Caddy holds it, with what the workers need to know about it."""

    entry: dict
    fingerprint: str | None  # None: not a certificate we can read
    names: frozenset[str]

    @property
    def ours(self) -> bool:
        tags = self.entry.get("tags")
        return isinstance(tags, list) and TAG in tags

    @property
    def cert_id(self) -> str | None:
        tags = self.entry.get("tags") or []
        prefix = f"{TAG}:"
        return next((t[len(prefix):] for t in tags if isinstance(t, str) and t.startswith(prefix)), None)


def describe(entry: object) -> Loaded:
    if not isinstance(entry, dict):
        return Loaded({"unreadable": True}, None, frozenset())
    try:
        cert = leaf(str(entry.get("certificate") or ""))
        return Loaded(entry, fingerprint_of(cert), dns_names(cert))
    except ValueError:
        return Loaded(entry, None, frozenset())


@dataclass
class Snapshot:
    """The list as read, and how to write a new one in its place."""

    loaded: list[Loaded]
    raw: list
    exists: bool
    etag: str | None

    def fingerprints(self) -> set[str]:
        return {item.fingerprint for item in self.loaded if item.fingerprint}


def read(client: AdminClient) -> Snapshot:
    response = client.request("GET", LOAD_PEM)
    if response.status == 200:
        value = response.json()
        if value is None:  # the parent object exists, this key not yet
            return Snapshot([], [], False, None)
        if not isinstance(value, list):
            raise CaddyError(f"Caddy's {LOAD_PEM} is not a list ({type(value).__name__}); fix Caddy's configuration")
        return Snapshot([describe(e) for e in value], value, True, _etag(response))
    if _missing(response):
        return Snapshot([], [], False, None)
    raise client.refused("GET", LOAD_PEM, response)


def _etag(response: Response) -> str:
    from .caddy_admin import etag

    return response.etag_header or etag(LOAD_PEM, response.body)


def _missing(response: Response) -> bool:
    """Caddy 2.6 answers a GET below a path that does not exist with 400 "invalid
    traversal path" (404 in other versions)."""
    text = response.body.decode("utf-8", "replace")
    return response.status == 404 or (response.status == 400 and "invalid traversal" in text)


def write(client: AdminClient, snapshot: Snapshot, entries: list) -> None:
    if snapshot.exists:
        response = client.request("PATCH", LOAD_PEM, entries, if_match=snapshot.etag)
        if response.status == 412:
            raise Conflict("the list changed since it was read")
        if response.status >= 300:
            raise client.refused("PATCH", LOAD_PEM, response)
        return
    response = client.request("PUT", LOAD_PEM, entries)
    if response.status >= 300:
        if b"already exists" in response.body:
            raise Conflict("the list was created since it was read")
        raise client.refused("PUT", LOAD_PEM, response)


Plan = Callable[[Snapshot], list]


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(client: AdminClient) -> threading.Lock:
    """The threads of one process (a `certs` run issues several certificates at once)
    take turns; If-Match settles it with every other writer."""
    with _locks_guard:
        return _locks.setdefault(client.url, threading.Lock())


def update(client: AdminClient, plan: Plan) -> Snapshot:
    """Read the list, ask `plan` for the new one, write it unless it is the same; again
    when another writer came in between. Returns the list Caddy holds afterwards."""
    with _lock_for(client):
        return _update(client, plan)


def _update(client: AdminClient, plan: Plan) -> Snapshot:
    for attempt in range(ATTEMPTS):
        if attempt:  # writers that collided should not collide again in step
            time.sleep(random.uniform(0, 0.05 * attempt))
        snapshot = read(client)
        entries = plan(snapshot)
        if snapshot.exists and _same(entries, snapshot.raw):
            return snapshot
        if not snapshot.exists and not entries:
            return snapshot
        try:
            write(client, snapshot, entries)
        except Conflict:
            continue
        return Snapshot([describe(e) for e in entries], entries, True, None)
    raise CaddyError(f"Caddy's {LOAD_PEM} was changed by another writer {ATTEMPTS} times while the workers "
                     "tried to update it; trying again on the next run")


def _same(a: list, b: list) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def replace_plan(add: list[Pem], drop: Callable[[Loaded], bool] | None = None) -> Plan:
    """Keep every entry but those `drop` names and those for the same names or the same
    certificate row as one in `add` (whoever loaded them); then append `add`."""
    ids = {pem.cert_id for pem in add}
    name_sets = {pem.names for pem in add}
    fingerprints = {pem.fingerprint for pem in add}

    def plan(snapshot: Snapshot) -> list:
        kept, present = [], set()
        for item, raw in zip(snapshot.loaded, snapshot.raw, strict=True):
            if item.fingerprint in fingerprints and item.ours and item.fingerprint not in present:
                kept.append(raw)  # already there: kept in its place (no write if nothing else changes)
                present.add(item.fingerprint)
                continue
            replaced = (item.ours and item.cert_id in ids) or (item.names and item.names in name_sets)
            if replaced or (drop is not None and drop(item)):
                continue
            kept.append(raw)
        return kept + [pem.entry() for pem in add if pem.fingerprint not in present]

    return plan
