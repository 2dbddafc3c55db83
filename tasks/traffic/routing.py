"""Which route a request host belongs to: `routes.domain` or one of its `aliases`."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import routes

from .caddy import normalize_host


class HostMap:
    """Host name -> route id; exact names first, then `*.example.com` wildcards."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names

    def route_for(self, host: str) -> str | None:
        route = self._names.get(host)
        if route is None and "." in host:
            route = self._names.get("*." + host.split(".", 1)[1])
        return route

    def __len__(self) -> int:
        return len(self._names)


def _aliases(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []


def load_host_map(conn: Connection) -> HostMap:
    """Every route's domain and aliases. A name claimed twice goes to the route whose
    own domain it is, then to a route that is not archived."""
    rows = conn.execute(
        sa.select(routes.c.id, routes.c.domain, routes.c.aliases, routes.c.archived_at)
    ).all()
    names: dict[str, tuple[int, str]] = {}
    for row in rows:
        archived = 1 if row.archived_at else 0
        candidates = [(row.domain, 0)] + [(alias, 2) for alias in _aliases(row.aliases)]
        for name, rank in candidates:
            host = normalize_host(name)
            score = rank + archived
            if host and (host not in names or score < names[host][0]):
                names[host] = (score, row.id)
    return HostMap({host: route for host, (_, route) in names.items()})
