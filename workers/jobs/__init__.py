"""The jobs, by area: one module per area, each declaring its `JOBS`. `AREAS` is the one
list of them (`PROXYOS_JOBS` names these areas); see `workers.registry`."""

from __future__ import annotations

from . import alerts, backup, certs, health, traffic

AREAS = {
    "alerts": alerts.JOBS,
    "backup": backup.JOBS,
    "certs": certs.JOBS,
    "health": health.JOBS,
    "traffic": traffic.JOBS,
}
