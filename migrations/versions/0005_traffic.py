"""The traffic ingestion position, aggregation state and latency histograms.

- `access_log.seq`: a monotonic ingest sequence number (the ids are random text, so they
  cannot say what is new); rows ProxyOS wrote before the workers have none and were
  already counted by ProxyOS itself. `access_log.latency_bin`: the row's histogram bin.
- `traffic_metrics.latency_hist`: a JSON object {bin: count}, mergeable across buckets.
- `traffic_ingest_position`: where the ingest job stopped reading each log file.
- `traffic_state`: named counters (last allocated seq, aggregation watermark).

Sequence numbers, byte offsets and counters can pass 2^31: they are BIGINT on
PostgreSQL (INTEGER is already 64-bit on SQLite).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from migrations.additive import ensure_index, ensure_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _big(name: str, *, nn: bool = False, default: int | None = None, pk: bool = False) -> sa.Column:
    return sa.Column(
        name,
        BIG,
        primary_key=pk,
        nullable=not (nn or pk),
        server_default=None if default is None else sa.text(str(default)),
    )


def _ensure(table: str, *columns: sa.Column) -> None:
    """Create `table`, or add the columns it lacks (each nullable or with a default)."""
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(table):
        op.create_table(table, *columns)
        return
    present = {column["name"] for column in inspector.get_columns(table)}
    for column in columns:
        if column.name not in present:
            op.add_column(table, column)


def upgrade() -> None:
    _ensure("access_log", _big("seq"), sa.Column("latency_bin", sa.Integer()))
    ensure_index("ix_access_log_seq", "access_log", ["seq"])
    ensure_table(
        "traffic_metrics",
        """
        latency_hist text
        """,
    )
    _ensure(
        "traffic_ingest_position",
        sa.Column("source", sa.Text(), primary_key=True),
        _big("device"),
        _big("inode"),
        _big("read_offset", nn=True, default=0),
        sa.Column("fingerprint", sa.Text()),
        sa.Column("fingerprint_len", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _big("lines", nn=True, default=0),
        _big("malformed", nn=True, default=0),
        _big("unmatched", nn=True, default=0),
        _big("updated_at"),
    )
    _ensure(
        "traffic_state",
        sa.Column("name", sa.Text(), primary_key=True),
        _big("value", nn=True, default=0),
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
