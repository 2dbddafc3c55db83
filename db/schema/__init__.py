"""The database schema: ProxyOS's tables (with the columns the workers add to them) and
the workers' own, as they are now, on one `metadata`. Import tables from here:
`from db.schema import access_log, routes`. Nothing is changed at import time; the
migrations build what this describes."""

from __future__ import annotations

from .alerts import alert_attempts, alert_events, alert_outbox, alert_rules, alert_state, system_settings
from .api import api_idempotency
from .certs import acme_account_keys, cert_deployments, cert_dns_records, cert_orders
from .columns import metadata
from .health import (
    health_check_totals,
    health_events,
    route_health_state,
    stream_health_checks,
    stream_health_state,
)
from .proxyos import (
    PROXYOS_TABLES,
    access_log,
    acme_accounts,
    agents,
    api_keys,
    audit_log,
    cert_issuance_log,
    certificates,
    dns_providers,
    error_hosts,
    health_checks,
    redirect_hosts,
    routes,
    sso_providers,
    streams,
    traffic_metrics,
    users,
)
from .runs import RUN_DURATION_BOUNDS_MS, job_leases, job_schedule, task_run_totals, task_runs
from .traffic import traffic_ingest_position, traffic_rollups, traffic_route_totals, traffic_state

__all__ = [
    'metadata', 'routes', 'redirect_hosts', 'error_hosts', 'streams', 'users', 'audit_log',
    'access_log', 'traffic_metrics', 'health_checks', 'certificates', 'sso_providers',
    'dns_providers', 'api_keys', 'agents', 'acme_accounts', 'cert_issuance_log', 'PROXYOS_TABLES',
    'task_runs', 'job_schedule', 'job_leases', 'stream_health_checks', 'route_health_state',
    'stream_health_state', 'health_events', 'acme_account_keys', 'cert_dns_records', 'cert_orders',
    'cert_deployments', 'traffic_ingest_position', 'traffic_state', 'traffic_rollups',
    'traffic_route_totals', 'task_run_totals', 'RUN_DURATION_BOUNDS_MS', 'health_check_totals',
    'api_idempotency', 'alert_rules', 'alert_events', 'system_settings', 'alert_state', 'alert_outbox',
    'alert_attempts',
]
