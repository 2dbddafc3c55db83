"""The certificate lifecycle: errors, next attempts, leases.

Revision ID: 0004
Revises: 0003
"""

from migrations.additive import ensure_index, ensure_table  # noqa: F401

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder: filled in by the certificates work before release


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
