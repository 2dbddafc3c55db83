"""The traffic ingestion position, aggregation state and latency histograms.

Revision ID: 0005
Revises: 0004
"""

from migrations.additive import ensure_index, ensure_table  # noqa: F401

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder: filled in by the traffic work before release


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
