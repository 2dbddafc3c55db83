"""The daily online backup of the SQLite database."""

from __future__ import annotations

from tasks.backup import backup_database

from ..registry import Job, JobContext

DAY = 24 * 3600.0


def _run(ctx: JobContext, _options: dict) -> dict:
    return backup_database(ctx.engine, ctx.settings.backup_dir, keep=ctx.settings.backup_keep)


JOBS = [
    Job(
        name="backup",
        help="Copy the database into PROXYOS_BACKUP_DIR (online, verified; newest "
        "PROXYOS_BACKUP_KEEP copies kept, default 30).",
        run=_run,
        every=DAY,
        example="proxyos-worker run-once backup",
    )
]
