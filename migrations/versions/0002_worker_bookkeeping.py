"""The workers' run history, schedule and leases; the indexes the jobs need.

Revision ID: 0002
Revises: 0001
"""

from migrations.additive import ensure_index, ensure_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ensure_table(
        "task_runs",
        """
        id text PK
        job text NN
        task_id text
        status text NN
        started_at real NN
        finished_at real
        duration_ms integer
        error text
        summary text
        host text
        """,
    )
    ensure_index("ix_task_runs_job_started", "task_runs", ["job", "started_at"])
    ensure_table(
        "job_schedule",
        """
        job text PK
        last_tick integer NN =0
        updated_at real
        """,
    )
    ensure_table(
        "job_leases",
        """
        job text PK
        owner text NN
        expires_at real NN
        """,
    )
    ensure_index("ix_access_log_recorded_at", "access_log", ["recorded_at"])
    ensure_index("ix_access_log_route_recorded", "access_log", ["route_id", "recorded_at"])
    ensure_index(
        "ix_traffic_metrics_route_bucket_ts", "traffic_metrics", ["route_id", "bucket", "bucket_ts"]
    )
    ensure_index("ix_health_checks_route_checked", "health_checks", ["route_id", "checked_at"])


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
