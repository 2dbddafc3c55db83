"""The traffic tables recounted from the raw data: `recount` and `stored` (every bucket,
in Python, from the access_log rows that carry a seq), `check_traffic` (the tables exact
while workers write: access_log against the log file's lines up to the committed read
position, the minutes against access_log, the rollups against the minutes)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import sqlalchemy as sa

from db.engine import write_transaction
from db.schema import access_log, traffic_metrics, traffic_rollups
from tasks.traffic import histogram, state

NOW = 1_764_000_000  # a fixed "now" (2025-11-24T16:00:00Z), on a whole day

SIZES_MS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
FIELDS = ("requests", "bytes", "errors", "status_2xx", "status_3xx", "status_4xx",
          "status_5xx", "latency_sum_ms")


def recount(engine) -> dict:
    """Every bucket recomputed in Python from the raw access_log rows that carry a seq."""
    expected: dict = defaultdict(Counter)
    hists: dict = defaultdict(Counter)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(access_log).where(access_log.c.seq.is_not(None))).mappings()
        for r in rows:
            status = r["status_code"] or 0
            for size, width in SIZES_MS.items():
                ts_ms = r["recorded_at"] * 1000
                key = (r["route_id"], size, ts_ms - ts_ms % width)
                c = expected[key]
                c["requests"] += 1
                c["bytes"] += r["bytes_out"] or 0
                c["errors"] += status >= 500
                c["status_2xx"] += 200 <= status <= 299
                c["status_3xx"] += 300 <= status <= 399
                c["status_4xx"] += 400 <= status <= 499
                c["status_5xx"] += 500 <= status <= 599
                c["latency_sum_ms"] += r["latency_ms"] or 0
                if r["latency_ms"] is not None:
                    hists[key][histogram.bin_of(r["latency_ms"])] += 1
    return {k: ({f: v[f] for f in FIELDS}, dict(hists[k])) for k, v in expected.items()}


def stored(engine) -> dict:
    """Every bucket the workers keep: the minutes and the rollups."""
    with engine.connect() as conn:
        rows = [*conn.execute(sa.select(traffic_metrics)).mappings(),
                *conn.execute(sa.select(traffic_rollups)).mappings()]
    return {
        (r["route_id"], r["bucket"], r["bucket_ts"]): (
            {f: r[f] for f in FIELDS}, histogram.decode(r["latency_hist"])
        )
        for r in rows
    }


def count_rows(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def uncount(engine) -> None:
    """Turn what ingest stored into a backlog: no buckets, the watermark back at 0 (as
    after an upgrade from workers that left counting to the aggregate job)."""
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(traffic_metrics))
        conn.execute(sa.delete(traffic_rollups))
        state.compare_and_set(conn, state.AGGREGATED_SEQ, state.read(conn, state.AGGREGATED_SEQ), 0)


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
        columns = ", ".join(FIELDS)
        stored = {(r[0], int(r[1])): tuple(int(v) for v in r[2:]) for r in conn.execute(sa.text(
            f"SELECT route_id, bucket_ts, {columns} FROM traffic_metrics WHERE bucket = '1m'"))}
        rollups = {bucket: tuple(int(v or 0) for v in conn.execute(sa.text(
            f"SELECT {', '.join(f'sum({s})' for s in FIELDS)} FROM {table} WHERE bucket = :b"),
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
