"""The traffic ingestion position, aggregation state and latency histograms.

- `access_log.seq`: a monotonic ingest sequence number (the ids are random text, so they
  cannot say what is new); rows ProxyOS wrote before the workers have none and were
  already counted by ProxyOS itself. `access_log.latency_bin`: the row's histogram bin.
- `traffic_metrics.latency_hist`: a JSON object {bin: count}, mergeable across buckets.
- `traffic_ingest_position`: where the ingest job stopped reading each log file.
- `traffic_state`: named counters (last allocated seq, aggregation watermark).

Revision ID: 0005
Revises: 0004
"""

from migrations.additive import ensure_index, ensure_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # access_log and traffic_metrics exist since 0001: these only add the missing columns.
    ensure_table(
        "access_log",
        """
        seq integer
        latency_bin integer
        """,
    )
    ensure_index("ix_access_log_seq", "access_log", ["seq"])
    ensure_table(
        "traffic_metrics",
        """
        latency_hist text
        """,
    )
    ensure_table(
        "traffic_ingest_position",
        """
        source text PK
        device integer
        inode integer
        read_offset integer NN =0
        fingerprint text
        fingerprint_len integer NN =0
        lines integer NN =0
        malformed integer NN =0
        unmatched integer NN =0
        updated_at integer
        """,
    )
    ensure_table(
        "traffic_state",
        """
        name text PK
        value integer NN =0
        """,
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
