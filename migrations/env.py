"""Alembic environment: runs on the connection `db.migrate` opened, in its transaction."""

from alembic import context

config = context.config
connection = config.attributes["connection"]
applied = config.attributes.setdefault("applied", [])


def _record(*, ctx, step, heads, run_args) -> None:  # noqa: ARG001 (alembic's signature)
    applied.append(step.up_revision_id)


context.configure(
    connection=connection,
    target_metadata=None,
    transactional_ddl=True,
    transaction_per_migration=False,
    on_version_apply=_record,
)

with context.begin_transaction():
    context.run_migrations()
