"""Alerts: ProxyOS's `alert_rules`, `alert_events` and `system_settings` where the
database lacks them (as ProxyOS creates them; existing ones are left as they are), and
the workers' `alert_state`, `alert_outbox` and `alert_attempts`.

Revision ID: 0011
Revises: 0010
"""

from migrations.additive import ensure_index, ensure_table

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ensure_table(
        "alert_rules",
        """
        id text PK
        name text NN
        type text NN
        target_route_id text
        config text NN
        enabled integer NN =1
        last_fired_at integer
        created_at integer NN
        """,
    )
    ensure_table(
        "alert_events",
        """
        id text PK
        rule_id text NN
        route_id text
        message text NN
        detail text
        fired_at integer NN
        """,
    )
    ensure_table(
        "system_settings",
        """
        key text PK
        value text NN
        updated_at integer NN
        """,
    )
    ensure_table(
        "alert_state",
        """
        rule_id text PK
        target text PK
        firing integer NN =0
        fired_at integer
        pending text
        pending_since integer
        pending_message text
        pending_detail text
        route_id text
        updated_at integer NN
        """,
    )
    ensure_table(
        "alert_outbox",
        """
        id text PK
        event_id text NN
        channel text NN
        body text NN
        status text NN ='pending'
        attempts integer NN =0
        next_attempt_at real NN
        lease_owner text
        lease_expires_at real
        last_error text
        created_at integer NN
        delivered_at integer
        """,
    )
    ensure_index("ix_alert_outbox_status_next", "alert_outbox", ["status", "next_attempt_at"])
    ensure_table(
        "alert_attempts",
        """
        id text PK
        outbox_id text NN
        attempt integer NN
        owner text NN
        started_at real NN
        finished_at real
        outcome text
        status_code integer
        error text
        """,
    )
    ensure_index("ix_alert_attempts_outbox", "alert_attempts", ["outbox_id"])


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
