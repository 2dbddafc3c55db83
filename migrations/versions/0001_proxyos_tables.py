"""Adopt or create the ProxyOS tables (SCHEMA.md), exactly as the dashboard defines them.

Revision ID: 0001
Revises:
"""

from migrations.additive import ensure_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = {
    "routes": """
        id text PK
        name text NN
        domain text NN UQ
        enabled integer NN =1
        upstream_type text NN
        upstreams text NN
        lb_policy text NN ='round_robin'
        tls_mode text NN ='auto'
        sso_enabled integer NN =0
        sso_provider_id text
        tls_dns_provider_id text
        rate_limit text
        ip_allowlist text
        basic_auth text
        headers text
        health_check_enabled integer NN =1
        health_check_path text NN ='/'
        health_check_interval integer NN =30
        health_check_status_codes text
        health_check_body_regex text
        health_check_max_response_ms integer
        compression_enabled integer NN =1
        websocket_enabled integer NN =1
        http2_enabled integer NN =1
        http3_enabled integer NN =1
        agent_id text
        last_traffic_at integer
        archived_at integer
        waf_mode text NN ='off'
        waf_exclusions text
        rate_limit_key text
        tunnel_provider_id text
        oauth_proxy_provider_id text
        oauth_proxy_allowlist text
        staging_upstreams text
        traffic_split_pct integer
        mirror_upstream text
        mirror_sample_rate integer
        accessos_groups text
        accessos_provider_id text
        mxwatch_domain text
        maintenance_mode integer NN =0
        maintenance_saved_upstreams text
        tenant_id text
        site_id text
        origin text NN ='local'
        config_version integer NN =1
        scope text NN ='exclusive'
        path_rewrite text
        cors_config text
        slow_request_threshold_ms integer =1000
        bandwidth_limit_bytes integer
        force_ssl integer NN =0
        hsts_enabled integer NN =0
        hsts_subdomains integer NN =0
        trust_upstream_headers integer NN =0
        skip_tls_verify integer NN =0
        upstream_protocol text NN ='http'
        upstream_sni text
        preset_id text
        cloudflare_zone_id text
        cloudflare_record_id text
        cloudflare_proxied integer
        aliases text
        created_at integer NN
        updated_at integer NN
        sync_status text
        sync_diff text
        sync_checked_at integer
        sync_source text
        exposure_mode text NN ='direct'
        tunnel_route_id text
        tunnel_public_url text
        access_list_id text
    """,
    "redirect_hosts": """
        id text PK
        agent_id text
        source_domain text NN UQ
        destination_url text NN
        redirect_code integer NN =301
        preserve_path integer NN =1
        preserve_query integer NN =1
        tls_enabled integer NN =1
        access_list_id text
        enabled integer NN =1
        created_at integer NN
        updated_at integer NN
    """,
    "error_hosts": """
        id text PK
        agent_id text
        domain text NN UQ
        status_code integer NN =404
        page_type text NN ='default'
        custom_html text
        redirect_url text
        tls_enabled integer NN =1
        enabled integer NN =1
        created_at integer NN
        updated_at integer NN
    """,
    "streams": """
        id text PK
        agent_id text
        listen_port integer NN UQ
        protocol text NN ='tcp'
        upstream_host text NN
        upstream_port integer NN
        enabled integer NN =1
        created_at integer NN
        updated_at integer NN
    """,
    "users": """
        id text PK
        email text NN UQ
        password_hash text
        role text NN ='viewer'
        display_name text
        avatar_color text
        avatar_url text
        sso_provider text
        sso_subject text
        totp_secret text
        totp_enabled integer NN =0
        totp_last_counter integer
        created_at integer NN
        last_login integer
    """,
    "audit_log": """
        id text PK
        action text NN
        resource_type text NN
        resource_id text
        resource_name text
        actor text NN ='user'
        detail text
        created_at integer NN
    """,
    "access_log": """
        id text PK
        route_id text NN
        method text
        path text
        status_code integer
        latency_ms integer
        bytes_out integer
        client_ip text
        user_agent text
        recorded_at integer NN
    """,
    "traffic_metrics": """
        id text PK
        route_id text NN
        bucket text NN
        bucket_ts integer NN
        requests integer NN =0
        bytes integer NN =0
        errors integer NN =0
        status_2xx integer NN =0
        status_3xx integer NN =0
        status_4xx integer NN =0
        status_5xx integer NN =0
        latency_sum_ms integer NN =0
    """,
    "health_checks": """
        id text PK
        route_id text NN ->routes.id
        checked_at integer NN
        status_code integer
        response_time_ms integer
        body_matched integer
        overall_status text NN
        error text
    """,
    "certificates": """
        id text PK
        domain text NN
        source text NN
        status text NN
        issued_at integer
        expires_at integer
        auto_renew integer NN =1
        last_renewed_at integer
        route_id text
        created_at integer NN
        updated_at integer NN
    """,
    "sso_providers": """
        id text PK
        name text NN
        type text NN
        forward_auth_url text NN
        auth_response_headers text NN ='[]'
        trusted_ips text NN ='[]'
        enabled integer NN =1
        last_tested_at integer
        test_status text NN ='unknown'
        created_at integer NN
    """,
    "dns_providers": """
        id text PK
        name text NN
        type text NN
        credentials text NN
        enabled integer NN =1
        created_at integer NN
    """,
    "api_keys": """
        id text PK
        name text NN
        key_hash text NN
        scopes text NN
        last_used integer
        expires_at integer
        created_at integer NN
    """,
    "agents": """
        id text PK
        name text NN
        site_tag text
        description text
        token_hash text NN
        token_expires_at integer NN
        status text NN ='offline'
        last_seen integer
        caddy_version text
        route_count integer NN =0
        cert_count integer NN =0
        created_at integer NN
    """,
    "acme_accounts": """
        id text PK
        email text NN
        provider text NN ='letsencrypt'
        acme_url text NN
        certs_count integer NN =0
        rate_limit_used integer NN =0
        rate_limit_reset_at integer
        created_at integer NN
    """,
    "cert_issuance_log": """
        id text PK
        domain text NN
        registered_domain text NN
        provider text NN
        method text
        issued_at integer NN
        expires_at integer
    """,
}


def upgrade() -> None:
    for name, spec in TABLES.items():
        ensure_table(name, spec)


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
