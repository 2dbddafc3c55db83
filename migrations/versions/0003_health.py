"""The health-check history of streams, flap-free state and events.

Revision ID: 0003
Revises: 0002
"""

from migrations.additive import ensure_index, ensure_table  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder: filled in by the health work before release


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
