"""The workers' own `traffic_rollups` table: the `1h` and `1d` buckets, moved out of
`traffic_metrics`.

ProxyOS's readers (dashboard cards, analytics, alert evaluator, Prometheus export) sum
every `traffic_metrics` row in a `bucket_ts` window without looking at `bucket`, so any
bucket size but `1m` there is counted again on top of the minutes. The rollups keep the
columns and ids they had; existing `1h`/`1d` rows are moved here in the migration's
transaction (copied, then deleted from `traffic_metrics`), so none is lost or doubled.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from migrations.additive import ensure_index, ensure_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = (
    "id, route_id, bucket, bucket_ts, requests, bytes, errors, status_2xx, status_3xx,"
    " status_4xx, status_5xx, latency_sum_ms, latency_hist"
)
MOVED = "bucket IN ('1h', '1d')"


def upgrade() -> None:
    ensure_table(
        "traffic_rollups",
        """
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
        latency_hist text
        """,
    )
    ensure_index("ix_traffic_rollups_route_bucket_ts", "traffic_rollups", ["route_id", "bucket", "bucket_ts"])
    ensure_index("ix_traffic_rollups_bucket_ts", "traffic_rollups", ["bucket", "bucket_ts"])
    op.execute(sa.text(
        f"INSERT INTO traffic_rollups ({COLUMNS}) SELECT {COLUMNS} FROM traffic_metrics WHERE {MOVED}"
        " ON CONFLICT (id) DO NOTHING"
    ))
    op.execute(sa.text(f"DELETE FROM traffic_metrics WHERE {MOVED}"))


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
