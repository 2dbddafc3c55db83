"""Which `certificates` rows the workers own, and who manages the others.

The dashboard writes a row for every route (its `syncFromRoutes`); Caddy obtains the
certificates of `auto`, `auto-staging` and `internal` routes and the dashboard keeps the
uploaded `custom` ones. The workers own only `dns01` rows of routes with tls_mode `dns`:
every UPDATE or DELETE of `certificates` by the workers is limited to those."""

from __future__ import annotations

import sqlalchemy as sa

from db.schema import certificates, routes


def owned():
    """SQL condition: a `certificates` row the workers may change."""
    dns_routes = sa.select(routes.c.id).where(routes.c.tls_mode == "dns")
    return sa.and_(certificates.c.source == "dns01", certificates.c.route_id.in_(dns_routes))


def is_owned(source: str | None, route_tls_mode: str | None) -> bool:
    return source == "dns01" and route_tls_mode == "dns"


def managed_by(source: str | None, route_tls_mode: str | None) -> str:
    """Who keeps this certificate, in words for `proxyos-worker certs`."""
    if is_owned(source, route_tls_mode):
        return "workers"
    if source == "custom":
        return "ProxyOS (uploaded)"
    if source == "dns01":
        return "nobody (its route is gone or no longer uses tls_mode dns)"
    return "Caddy (ProxyOS)"


def not_ours(domain: str, source: str | None, route_tls_mode: str | None) -> str:
    return (
        f"certificate {domain} is managed by {managed_by(source, route_tls_mode)}; the workers "
        "issue only dns01 certificates of routes with tls_mode dns"
    )
