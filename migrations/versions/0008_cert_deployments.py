"""The workers' own `cert_deployments` table: what was loaded into Caddy for each
certificate (serial, fingerprint, when) and, while the current certificate is not there
yet, since when, why, and the next attempt.

Revision ID: 0008
Revises: 0007
"""

from migrations.additive import ensure_table

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ensure_table(
        "cert_deployments",
        """
        certificate_id text PK
        target text NN
        names text
        serial text
        fingerprint text
        deployed_at integer
        pending_since integer
        last_attempt_at integer
        last_error text
        failures integer NN =0
        next_attempt_at integer
        """,
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
