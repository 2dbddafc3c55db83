"""Alembic environment and the append-only list of schema revisions (see MANIFEST)."""
