"""The ACME order in flight per certificate (`cert_orders`), so that a worker killed
after the CA issued but before the certificate was stored fetches that certificate
instead of ordering another.

Revision ID: 0006
Revises: 0005
"""

from migrations.additive import ensure_table

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ensure_table(
        "cert_orders",
        """
        certificate_id text PK
        account_id text NN
        order_url text NN
        names text NN
        key_pem text
        key_file text
        created_at integer NN
        """,
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
