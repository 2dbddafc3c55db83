"""Host names as the CA and DNS see them, apart from how the route spells them.

`certificates.domain` keeps the route's `domain` exactly as written (the dashboard finds a
route's certificate by that text); every ACME use (orders, files, DNS challenges, the
issuance log) goes through `acme_name`. Routes whose names are the same for the CA share
one certificate: see `group_routes`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import idna


def acme_name(name: str) -> str:
    """Lower-case, no trailing dot, IDNA (punycode) labels; a leading `*.` is kept.
    Raises ValueError with a readable reason for something that is no host name."""
    if not isinstance(name, str):
        raise ValueError(f"{name!r} is not a host name (not text)")
    text = name.strip().rstrip(".")
    wildcard = text.startswith("*.")
    body = text[2:] if wildcard else text
    if not body or " " in body or "*" in body or ".." in body:
        raise ValueError(f"{name!r} is not a host name")
    try:
        ascii_name = idna.encode(body, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{name!r} is not a host name ({exc})") from None
    return ("*." if wildcard else "") + ascii_name.lower()


def acme_name_or_none(name: str) -> str | None:
    """`acme_name`, or None for something that is no host name."""
    try:
        return acme_name(name)
    except (ValueError, RecursionError):
        return None


def route_names(domain: str, aliases: str | None) -> list[str]:
    """domain + aliases as ACME names, without duplicates, domain first. Raises
    ValueError with a readable reason for a malformed aliases column."""
    names = [acme_name(domain)]
    if aliases:
        if not isinstance(aliases, str):
            raise ValueError("aliases is not text holding a JSON list")
        try:
            extra = json.loads(aliases)
        except ValueError:
            raise ValueError("aliases is not a JSON list") from None
        except RecursionError:  # json's own limit, for hostile nesting
            raise ValueError("aliases is not a JSON list of host names (nested too deeply)") from None
        if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
            raise ValueError("aliases is not a JSON list of host names")
        for alias in extra:
            if alias.strip().rstrip("."):
                name = acme_name(alias)
                if name not in names:
                    names.append(name)
    return names


@dataclass(frozen=True)
class RouteNames:
    route_id: str
    domain: str  # as the route writes it
    names: tuple[str, ...]  # ACME names, the route's domain first
    order: tuple  # (created_at, id): the first route of a group leads it


@dataclass(frozen=True)
class Group:
    """Routes served by one certificate. Its lead (the oldest route) owns the row that is
    ordered; the other routes' rows show the same state. The files go to the folder of
    `names[0]`, the lead's domain."""

    routes: tuple[RouteNames, ...]
    names: tuple[str, ...]

    @property
    def lead(self) -> RouteNames:
        return self.routes[0]


def group_routes(items: Sequence[RouteNames]) -> list[Group]:
    """One group per certificate: routes are together when their domains are the same
    ACME name (they would share a folder) or when they end up with the same set of
    names (they would order the same certificate twice)."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join_equal(keys: dict[int, object]) -> bool:
        """Join the groups (by root) whose keys are equal; True if any were joined."""
        first: dict[object, int] = {}
        joined = False
        for root, key in keys.items():
            other = first.setdefault(key, root)
            if other != root:
                parent[root] = other
                joined = True
        return joined

    join_equal({i: items[i].names[0] for i in range(len(items))})
    # Merging can make a group's name set equal to another's: repeat until stable.
    while True:
        sets: dict[int, set[str]] = {}
        for i, item in enumerate(items):
            sets.setdefault(find(i), set()).update(item.names)
        if not join_equal({root: frozenset(names) for root, names in sets.items()}):
            break
    by_root: dict[int, list[RouteNames]] = {}
    for i, item in enumerate(items):
        by_root.setdefault(find(i), []).append(item)
    groups = []
    for members in by_root.values():
        routes = tuple(sorted(members, key=lambda r: r.order))
        names: list[str] = []
        for route in routes:
            names.extend(n for n in route.names if n not in names)
        groups.append(Group(routes, tuple(names)))
    return sorted(groups, key=lambda g: g.lead.order)
