"""How far ingest has read an access log, and what it found there (for `status`)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.schema import traffic_ingest_position as positions


def ingest_progress(engine: Engine, source: Path) -> dict:
    """The log's path and size now; the offset read to and the lines, malformed lines
    and lines for no route counted so far, once a run has read it."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(positions).where(positions.c.source == str(source))).mappings().first()
    try:
        size = source.stat().st_size
    except OSError:
        size = None
    out: dict = {"access_log": str(source), "file_bytes": size}
    if row is not None:
        out.update(read_offset=row["read_offset"], lines=row["lines"], malformed=row["malformed"],
                   unmatched=row["unmatched"])
    return out
