"""The ProxyOS tables, as the dashboard defines them (see shared SCHEMA.md), with the
columns the workers add to some of them (each marked with its migration).

Names, types, defaults and units match ProxyOS exactly: timestamps `*_at` are INTEGER
seconds since the epoch, `traffic_metrics.bucket_ts` is INTEGER milliseconds, booleans
are INTEGER 0/1, ids are TEXT, JSON columns are TEXT holding JSON.

This package describes the schema as it is *now*. The migrations in `migrations/versions`
build it; each carries its own frozen copy of what it adds, so editing this file never
changes what an old migration does.
"""

from __future__ import annotations

from sqlalchemy import Float, Index, Table

from .columns import BIG, INT, c, metadata

routes = Table(
    "routes",
    metadata,
    c("id", pk=True),
    c("name", nn=True),
    c("domain", nn=True, unique=True),
    c("enabled", INT, nn=True, default=1),
    c("upstream_type", nn=True),
    c("upstreams", nn=True),
    c("lb_policy", nn=True, default="round_robin"),
    c("tls_mode", nn=True, default="auto"),
    c("sso_enabled", INT, nn=True, default=0),
    c("sso_provider_id"),
    c("tls_dns_provider_id"),
    c("rate_limit"),
    c("ip_allowlist"),
    c("basic_auth"),
    c("headers"),
    c("health_check_enabled", INT, nn=True, default=1),
    c("health_check_path", nn=True, default="/"),
    c("health_check_interval", INT, nn=True, default=30),
    c("health_check_status_codes"),
    c("health_check_body_regex"),
    c("health_check_max_response_ms", INT),
    c("compression_enabled", INT, nn=True, default=1),
    c("websocket_enabled", INT, nn=True, default=1),
    c("http2_enabled", INT, nn=True, default=1),
    c("http3_enabled", INT, nn=True, default=1),
    c("agent_id"),
    c("last_traffic_at", INT),
    c("archived_at", INT),
    c("waf_mode", nn=True, default="off"),
    c("waf_exclusions"),
    c("rate_limit_key"),
    c("tunnel_provider_id"),
    c("oauth_proxy_provider_id"),
    c("oauth_proxy_allowlist"),
    c("staging_upstreams"),
    c("traffic_split_pct", INT),
    c("mirror_upstream"),
    c("mirror_sample_rate", INT),
    c("accessos_groups"),
    c("accessos_provider_id"),
    c("mxwatch_domain"),
    c("maintenance_mode", INT, nn=True, default=0),
    c("maintenance_saved_upstreams"),
    c("tenant_id"),
    c("site_id"),
    c("origin", nn=True, default="local"),
    c("config_version", INT, nn=True, default=1),
    c("scope", nn=True, default="exclusive"),
    c("path_rewrite"),
    c("cors_config"),
    c("slow_request_threshold_ms", INT, default=1000),
    c("bandwidth_limit_bytes", INT),
    c("force_ssl", INT, nn=True, default=0),
    c("hsts_enabled", INT, nn=True, default=0),
    c("hsts_subdomains", INT, nn=True, default=0),
    c("trust_upstream_headers", INT, nn=True, default=0),
    c("skip_tls_verify", INT, nn=True, default=0),
    c("upstream_protocol", nn=True, default="http"),
    c("upstream_sni"),
    c("preset_id"),
    c("cloudflare_zone_id"),
    c("cloudflare_record_id"),
    c("cloudflare_proxied", INT),
    c("aliases"),
    c("created_at", INT, nn=True),
    c("updated_at", INT, nn=True),
    c("sync_status"),
    c("sync_diff"),
    c("sync_checked_at", INT),
    c("sync_source"),
    c("exposure_mode", nn=True, default="direct"),
    c("tunnel_route_id"),
    c("tunnel_public_url"),
    c("access_list_id"),
)

redirect_hosts = Table(
    "redirect_hosts",
    metadata,
    c("id", pk=True),
    c("agent_id"),
    c("source_domain", nn=True, unique=True),
    c("destination_url", nn=True),
    c("redirect_code", INT, nn=True, default=301),
    c("preserve_path", INT, nn=True, default=1),
    c("preserve_query", INT, nn=True, default=1),
    c("tls_enabled", INT, nn=True, default=1),
    c("access_list_id"),
    c("enabled", INT, nn=True, default=1),
    c("created_at", INT, nn=True),
    c("updated_at", INT, nn=True),
)

error_hosts = Table(
    "error_hosts",
    metadata,
    c("id", pk=True),
    c("agent_id"),
    c("domain", nn=True, unique=True),
    c("status_code", INT, nn=True, default=404),
    c("page_type", nn=True, default="default"),
    c("custom_html"),
    c("redirect_url"),
    c("tls_enabled", INT, nn=True, default=1),
    c("enabled", INT, nn=True, default=1),
    c("created_at", INT, nn=True),
    c("updated_at", INT, nn=True),
)

streams = Table(
    "streams",
    metadata,
    c("id", pk=True),
    c("agent_id"),
    c("listen_port", INT, nn=True, unique=True),
    c("protocol", nn=True, default="tcp"),
    c("upstream_host", nn=True),
    c("upstream_port", INT, nn=True),
    c("enabled", INT, nn=True, default=1),
    c("created_at", INT, nn=True),
    c("updated_at", INT, nn=True),
)

users = Table(
    "users",
    metadata,
    c("id", pk=True),
    c("email", nn=True, unique=True),
    c("password_hash"),
    c("role", nn=True, default="viewer"),
    c("display_name"),
    c("avatar_color"),
    c("avatar_url"),
    c("sso_provider"),
    c("sso_subject"),
    c("totp_secret"),
    c("totp_enabled", INT, nn=True, default=0),
    c("totp_last_counter", INT),
    c("created_at", INT, nn=True),
    c("last_login", INT),
)

audit_log = Table(
    "audit_log",
    metadata,
    c("id", pk=True),
    c("action", nn=True),
    c("resource_type", nn=True),
    c("resource_id"),
    c("resource_name"),
    c("actor", nn=True, default="user"),
    c("detail"),
    c("created_at", INT, nn=True),
)

access_log = Table(
    "access_log",
    metadata,
    c("id", pk=True),
    c("route_id", nn=True),
    c("method"),
    c("path"),
    c("status_code", INT),
    c("latency_ms", INT),
    c("bytes_out", INT),
    c("client_ip"),
    c("user_agent"),
    c("recorded_at", INT, nn=True),
    # The workers' columns (migration 0005): the ingest sequence number (NULL for rows
    # ProxyOS wrote itself) and the latency histogram bin.
    c("seq", BIG),
    c("latency_bin", INT),
    Index("ix_access_log_recorded_at", "recorded_at"),
    Index("ix_access_log_route_recorded", "route_id", "recorded_at"),
    Index("ix_access_log_seq", "seq"),
)

traffic_metrics = Table(
    "traffic_metrics",
    metadata,
    c("id", pk=True),
    c("route_id", nn=True),
    c("bucket", nn=True),
    c("bucket_ts", INT, nn=True),
    c("requests", INT, nn=True, default=0),
    c("bytes", INT, nn=True, default=0),
    c("errors", INT, nn=True, default=0),
    c("status_2xx", INT, nn=True, default=0),
    c("status_3xx", INT, nn=True, default=0),
    c("status_4xx", INT, nn=True, default=0),
    c("status_5xx", INT, nn=True, default=0),
    c("latency_sum_ms", INT, nn=True, default=0),
    c("latency_hist"),  # the workers' (migration 0005): JSON object {"bin": count}
    Index("ix_traffic_metrics_route_bucket_ts", "route_id", "bucket", "bucket_ts"),
)

health_checks = Table(
    "health_checks",
    metadata,
    c("id", pk=True),
    c("route_id", nn=True, fk="routes.id"),
    c("checked_at", INT, nn=True),
    c("status_code", INT),
    c("response_time_ms", INT),
    c("body_matched", INT),
    c("overall_status", nn=True),
    c("error"),
    Index("ix_health_checks_route_checked", "route_id", "checked_at"),
)

certificates = Table(
    "certificates",
    metadata,
    c("id", pk=True),
    c("domain", nn=True),
    c("source", nn=True),
    c("status", nn=True),
    c("issued_at", INT),
    c("expires_at", INT),
    c("auto_renew", INT, nn=True, default=1),
    c("last_renewed_at", INT),
    c("route_id"),
    c("created_at", INT, nn=True),
    c("updated_at", INT, nn=True),
    # The workers' lifecycle columns (migration 0004).
    c("names"),  # JSON list: domain + aliases the certificate covers
    c("last_error"),
    c("next_attempt_at", INT),
    c("failures", INT, nn=True, default=0),
    c("renew_at", INT),
    c("ari_cert_id"),
    c("ari_next_check_at", INT),
    c("lease_owner"),
    c("lease_expires_at", Float),
)

sso_providers = Table(
    "sso_providers",
    metadata,
    c("id", pk=True),
    c("name", nn=True),
    c("type", nn=True),
    c("forward_auth_url", nn=True),
    c("auth_response_headers", nn=True, default="[]"),
    c("trusted_ips", nn=True, default="[]"),
    c("enabled", INT, nn=True, default=1),
    c("last_tested_at", INT),
    c("test_status", nn=True, default="unknown"),
    c("created_at", INT, nn=True),
)

dns_providers = Table(
    "dns_providers",
    metadata,
    c("id", pk=True),
    c("name", nn=True),
    c("type", nn=True),
    c("credentials", nn=True),
    c("enabled", INT, nn=True, default=1),
    c("created_at", INT, nn=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    c("id", pk=True),
    c("name", nn=True),
    c("key_hash", nn=True),
    c("scopes", nn=True),
    c("last_used", INT),
    c("expires_at", INT),
    c("created_at", INT, nn=True),
)

agents = Table(
    "agents",
    metadata,
    c("id", pk=True),
    c("name", nn=True),
    c("site_tag"),
    c("description"),
    c("token_hash", nn=True),
    c("token_expires_at", INT, nn=True),
    c("status", nn=True, default="offline"),
    c("last_seen", INT),
    c("caddy_version"),
    c("route_count", INT, nn=True, default=0),
    c("cert_count", INT, nn=True, default=0),
    c("created_at", INT, nn=True),
)

acme_accounts = Table(
    "acme_accounts",
    metadata,
    c("id", pk=True),
    c("email", nn=True),
    c("provider", nn=True, default="letsencrypt"),
    c("acme_url", nn=True),
    c("certs_count", INT, nn=True, default=0),
    c("rate_limit_used", INT, nn=True, default=0),
    c("rate_limit_reset_at", INT),
    c("created_at", INT, nn=True),
)

cert_issuance_log = Table(
    "cert_issuance_log",
    metadata,
    c("id", pk=True),
    c("domain", nn=True),
    c("registered_domain", nn=True),
    c("provider", nn=True),
    c("method"),
    c("issued_at", INT, nn=True),
    c("expires_at", INT),
)

PROXYOS_TABLES = (
    "routes",
    "redirect_hosts",
    "error_hosts",
    "streams",
    "users",
    "audit_log",
    "access_log",
    "traffic_metrics",
    "health_checks",
    "certificates",
    "sso_providers",
    "dns_providers",
    "api_keys",
    "agents",
    "acme_accounts",
    "cert_issuance_log",
)
