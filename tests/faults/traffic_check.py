"""Traffic totals recounted from the raw data: `access_log` against the lines of the log
file up to the committed read position, `traffic_metrics` against `access_log`, and the
rollups in `traffic_rollups` against the minutes."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

SUMS = ("requests", "bytes", "errors", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "latency_sum_ms")

RECOUNT = """
SELECT route_id, (recorded_at / 60) * 60000 AS bucket_ts,
       count(*), sum(coalesce(bytes_out, 0)),
       sum(CASE WHEN status_code >= 500 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code >= 200 AND status_code < 300 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code >= 300 AND status_code < 400 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code >= 400 AND status_code < 500 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code >= 500 AND status_code < 600 THEN 1 ELSE 0 END),
       sum(coalesce(latency_ms, 0))
FROM access_log WHERE seq IS NOT NULL AND seq <= :watermark
GROUP BY route_id, (recorded_at / 60) * 60000
"""


def _state(conn, name: str) -> int:
    return conn.execute(sa.text("SELECT value FROM traffic_state WHERE name = :n"), {"n": name}).scalar() or 0


def check_traffic(engine: sa.Engine, log_file: Path) -> dict[str, int]:
    """Assert the traffic tables are exact; returns the counts it checked. All reads see
    one snapshot (SQLite's read transaction; REPEATABLE READ on PostgreSQL), so this can
    run while workers write."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        offset = conn.execute(sa.text("SELECT read_offset FROM traffic_ingest_position WHERE source = :s"),
                              {"s": str(log_file)}).scalar() or 0
        rows, distinct = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT seq) FROM access_log WHERE seq IS NOT NULL")).one()
        watermark = _state(conn, "aggregated_seq")
        recount = {(r[0], int(r[1])): tuple(int(v) for v in r[2:])
                   for r in conn.execute(sa.text(RECOUNT), {"watermark": watermark})}
        columns = ", ".join(SUMS)
        stored = {(r[0], int(r[1])): tuple(int(v) for v in r[2:]) for r in conn.execute(sa.text(
            f"SELECT route_id, bucket_ts, {columns} FROM traffic_metrics WHERE bucket = '1m'"))}
        rollups = {bucket: tuple(int(v or 0) for v in conn.execute(sa.text(
            f"SELECT {', '.join(f'sum({s})' for s in SUMS)} FROM {table} WHERE bucket = :b"),
            {"b": bucket}).one()) for table, bucket in (("traffic_metrics", "1m"), ("traffic_rollups", "1h"),
                                                         ("traffic_rollups", "1d"))}
        others = conn.execute(sa.text("SELECT count(*) FROM traffic_metrics WHERE bucket <> '1m'")).scalar()
    with log_file.open("rb") as log:
        lines = log.read(offset).count(b"\n")
    assert rows == distinct, f"{rows - distinct} access_log rows share a seq (a line ingested twice)"
    assert rows == lines, f"access_log has {rows} rows for the {lines} lines before the read position"
    assert stored == recount, _difference(stored, recount)
    assert rollups["1h"] == rollups["1m"] == rollups["1d"], rollups
    assert others == 0, f"{others} traffic_metrics rows are not 1m: the dashboard adds them to every total"
    return {"lines": lines, "rows": rows, "aggregated": sum(v[0] for v in recount.values())}


def _difference(stored: dict, recount: dict) -> str:
    keys = sorted(set(stored) | set(recount), key=str)
    wrong = [(k, stored.get(k), recount.get(k)) for k in keys if stored.get(k) != recount.get(k)]
    return f"{len(wrong)} 1m buckets differ from a recount, e.g. (key, stored, recount): {wrong[:3]}"
