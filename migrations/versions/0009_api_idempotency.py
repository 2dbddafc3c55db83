"""The HTTP API's (`proxyos-worker serve`) `api_idempotency` table: the first answer to
each `Idempotency-Key` an API key sent, kept 24 hours, so that a retried request is
answered again and enqueues nothing, across restarts and several API processes; and an
index to find a task's runs by its task id (`GET /v1/runs/{task_id}`).

Revision ID: 0009
Revises: 0008
"""

from migrations.additive import ensure_index, ensure_table

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ensure_table(
        "api_idempotency",
        """
        id text PK
        api_key_id text NN
        request_hash text NN
        status integer NN
        response text NN
        created_at integer NN
        """,
    )
    ensure_index("ix_api_idempotency_created_at", "api_idempotency", ["created_at"])
    ensure_index("ix_task_runs_task_id", "task_runs", ["task_id"])


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
