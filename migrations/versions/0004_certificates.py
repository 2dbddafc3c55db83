"""The certificate lifecycle: errors, next attempts, leases, ARI; account keys; published
challenge records (so a crash never leaves a TXT value behind).

Revision ID: 0004
Revises: 0003
"""

from migrations.additive import ensure_index, ensure_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The table exists since 0001: ensure_table adds these columns to it.
    ensure_table(
        "certificates",
        """
        names text
        last_error text
        next_attempt_at integer
        failures integer NN =0
        renew_at integer
        ari_cert_id text
        ari_next_check_at integer
        lease_owner text
        lease_expires_at real
        """,
    )
    ensure_index("ix_certificates_route_id", "certificates", ["route_id"])
    ensure_index("ix_certificates_domain", "certificates", ["domain"])
    ensure_table(
        "acme_account_keys",
        """
        account_id text PK
        key_pem text NN
        account_uri text
        updated_at integer NN
        """,
    )
    ensure_table(
        "cert_dns_records",
        """
        id text PK
        certificate_id text NN
        provider_id text NN
        fqdn text NN
        zone text NN
        value text NN
        created_at integer NN
        """,
    )
    ensure_index("ix_cert_dns_records_certificate", "cert_dns_records", ["certificate_id"])
    ensure_index(
        "ix_cert_issuance_log_registered", "cert_issuance_log", ["registered_domain", "issued_at"]
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
