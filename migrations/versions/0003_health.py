"""The health-check history of streams, flap-free state and events.

Revision ID: 0003
Revises: 0002
"""

from migrations.additive import ensure_index, ensure_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATE_COLUMNS = """
        status text NN ='unknown'
        status_since integer
        recent text NN =''
        consecutive_successes integer NN =0
        consecutive_failures integer NN =0
        last_result text
        last_error text
        last_checked_at real
        last_lateness_ms integer
        next_due_at real
        updated_at real
"""


def upgrade() -> None:
    ensure_table(
        "stream_health_checks",
        """
        id text PK
        stream_id text NN ->streams.id
        checked_at integer NN
        protocol text NN
        status text NN
        response_time_ms integer
        error text
        """,
    )
    ensure_index(
        "ix_stream_health_checks_stream_checked",
        "stream_health_checks",
        ["stream_id", "checked_at"],
    )
    ensure_table("route_health_state", "route_id text PK ->routes.id" + _STATE_COLUMNS)
    ensure_index("ix_route_health_state_next_due", "route_health_state", ["next_due_at"])
    ensure_table("stream_health_state", "stream_id text PK ->streams.id" + _STATE_COLUMNS)
    ensure_index("ix_stream_health_state_next_due", "stream_health_state", ["next_due_at"])
    ensure_table(
        "health_events",
        """
        id text PK
        target_type text NN
        target_id text NN
        from_status text NN
        to_status text NN
        reason text
        created_at integer NN
        """,
    )
    ensure_index("ix_health_events_target_created", "health_events", ["target_id", "created_at"])
    ensure_index("ix_health_events_created", "health_events", ["created_at"])


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
