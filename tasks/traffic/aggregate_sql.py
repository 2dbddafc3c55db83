"""The statements of one aggregation batch, for SQLite and PostgreSQL.

A batch is grouped once, by route, minute and latency bin, into a temporary table (which
on SQLite lives in the connection's temp database: filling it takes no lock on the main
file). From there each bucket size is one INSERT ... SELECT ... ON CONFLICT that adds the
counters and merges the JSON histograms in SQL, so no row passes through Python.
"""

from __future__ import annotations

from .buckets import COUNTERS, MINUTE_MS, bucket_table

DELTA = "traffic_agg_delta"  # per (route, minute, bin)
HOURS = "traffic_agg_hours"  # the same, per (route, hour, bin)

CREATE_DELTA = [
    f"""CREATE TEMP TABLE IF NOT EXISTS {table} (
    route_id TEXT NOT NULL, {unit} BIGINT NOT NULL, bin INTEGER,
    n BIGINT, b BIGINT, e BIGINT, s2 BIGINT, s3 BIGINT, s4 BIGINT, s5 BIGINT, lat BIGINT,
    newest BIGINT
)"""
    for table, unit in ((DELTA, "minute"), (HOURS, "hour"))
]

CLEAR_DELTA = [f"DELETE FROM {DELTA}", f"DELETE FROM {HOURS}"]

UNSTORED = "traffic_ingest_unstored"  # rows the ingest job counts but never stores

# Counted by the ingest job but not stored: the per-route cap would delete them anyway
# (newer lines of their route were already read). The connection's own temp table.
CREATE_UNSTORED = f"""CREATE TEMP TABLE IF NOT EXISTS {UNSTORED} (
    route_id TEXT NOT NULL, recorded_at BIGINT NOT NULL, status_code INTEGER, latency_ms BIGINT,
    bytes_out BIGINT, latency_bin INTEGER
)"""

CLEAR_UNSTORED = f"DELETE FROM {UNSTORED}"

INSERT_UNSTORED = (f"INSERT INTO {UNSTORED} (route_id, recorded_at, status_code, latency_ms, bytes_out,"
                   " latency_bin) VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})")

_GROUPED = """
SELECT route_id, recorded_at / 60, latency_bin,
       count(*),
       sum(coalesce(bytes_out, 0)),
       sum(CASE WHEN status_code >= 500 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code BETWEEN 300 AND 399 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code BETWEEN 400 AND 499 THEN 1 ELSE 0 END),
       sum(CASE WHEN status_code BETWEEN 500 AND 599 THEN 1 ELSE 0 END),
       sum(coalesce(latency_ms, 0)),
       max(recorded_at)
FROM {source}
GROUP BY route_id, recorded_at / 60, latency_bin
"""

_FILL = f"INSERT INTO {DELTA} (route_id, minute, bin, n, b, e, s2, s3, s4, s5, lat, newest)"
_COLUMNS = "route_id, recorded_at, status_code, latency_ms, bytes_out, latency_bin"

# The rows low < seq <= high of access_log.
FILL_DELTA = _FILL + _GROUPED.format(source="access_log WHERE seq > :low AND seq <= :high")

# The same and the unstored rows, grouped together: one delta row per (route, minute, bin).
FILL_DELTA_WITH_UNSTORED = _FILL + _GROUPED.format(source=f"""(
    SELECT {_COLUMNS} FROM access_log WHERE seq > :low AND seq <= :high
    UNION ALL
    SELECT {_COLUMNS} FROM {UNSTORED}) AS counted""")

FILL_HOURS = f"""
INSERT INTO {HOURS} (route_id, hour, bin, n, b, e, s2, s3, s4, s5, lat, newest)
SELECT route_id, minute / 60, bin, sum(n), sum(b), sum(e), sum(s2), sum(s3), sum(s4), sum(s5),
       sum(lat), max(newest)
FROM {DELTA} GROUP BY route_id, minute / 60, bin
"""

DELTA_ROWS = f"SELECT coalesce(sum(n), 0) FROM {HOURS}"

NEWEST_PER_ROUTE = f"SELECT route_id, max(newest) FROM {HOURS} GROUP BY route_id"

TOUCH_ROUTE = """
UPDATE routes SET last_traffic_at = :ts
WHERE id = :route AND (last_traffic_at IS NULL OR last_traffic_at < :ts)
"""

# Adds the batch's requests, errors and bytes to each route's cumulative totals, in the
# transaction that adds them to the buckets: exactly once per counted row, like them.
ADD_ROUTE_TOTALS = f"""
INSERT INTO traffic_route_totals (route_id, requests, errors, bytes)
SELECT route_id, sum(n), sum(e), sum(b) FROM {HOURS}
WHERE true
GROUP BY route_id
ON CONFLICT (route_id) DO UPDATE SET
    requests = traffic_route_totals.requests + excluded.requests,
    errors = traffic_route_totals.errors + excluded.errors,
    bytes = traffic_route_totals.bytes + excluded.bytes
"""

_SUMS = ("n", "b", "e", "s2", "s3", "s4", "s5", "lat")

# Adds two stored histograms on SQLite: `histogram.add_encoded`, registered on the
# aggregating connection. The same merge in SQL (json_each of both, UNION ALL, GROUP BY,
# json_group_object) costs about twice as much, and an incremental run is mostly merges
# into the open buckets.
HIST_ADD = "proxyos_hist_add"

# What PostgreSQL accepts as a stored histogram (json_object_agg's spacing or ours); any
# other value counts as empty, rather than failing the cast to json and every run after.
_PG_HISTOGRAM = r'^\s*\{\s*"\d+"\s*:\s*\d+\s*(,\s*"\d+"\s*:\s*\d+\s*)*\}\s*$'

# {dialect: (histogram of the group's bins, merge of the stored and the new histogram)};
# `{t}` is the bucket table's name.
_JSON = {
    "sqlite": (
        "json_group_object(bin, n) FILTER (WHERE bin IS NOT NULL)",
        f"{HIST_ADD}({{t}}.latency_hist, excluded.latency_hist)",
    ),
    "postgresql": (
        "(json_object_agg(bin, n) FILTER (WHERE bin IS NOT NULL))::text",
        f"""CASE WHEN excluded.latency_hist IS NULL THEN {{t}}.latency_hist
                WHEN {{t}}.latency_hist IS NULL
                  OR {{t}}.latency_hist !~ '{_PG_HISTOGRAM}' THEN excluded.latency_hist
                ELSE (SELECT json_object_agg(key, total)::text FROM (
                        SELECT key, sum(value::bigint) AS total FROM (
                            SELECT * FROM json_each_text({{t}}.latency_hist::json)
                            UNION ALL
                            SELECT * FROM json_each_text(excluded.latency_hist::json)) AS u
                        GROUP BY key) AS v)
           END""",
    ),
}


def upsert_bucket(dialect: str, size: str, minutes: int) -> str:
    """Add the delta into the `size` buckets (`minutes` long): one statement, reading
    the per-minute delta for 1m, the per-hour one for longer buckets.

    The workers' rows have the id `<size>-<bucket_ts>-<route_id>`: keyed by what they
    count, so a re-run finds the same row (ProxyOS's own rows keep their random ids)."""
    target = bucket_table(size)
    hist, merge = _JSON["postgresql" if dialect == "postgresql" else "sqlite"]
    merge = merge.replace("{t}", target)
    width = minutes * MINUTE_MS
    inner = ", ".join(f"sum({name}) AS {name}" for name in _SUMS)
    outer = ", ".join(f"sum({name})" for name in _SUMS)
    columns = ", ".join(COUNTERS)
    updates = ", ".join(f"{c} = {target}.{c} + excluded.{c}" for c in COUNTERS)
    table, unit, per = (DELTA, "minute", minutes) if minutes < 60 else (HOURS, "hour", minutes // 60)
    if per == 1:  # already one row per (route, bucket, bin)
        source = f"(SELECT route_id, {unit} AS t, bin, {', '.join(_SUMS)} FROM {table}) AS g"
    else:
        source = f"""(SELECT route_id, CAST({unit} / {per} AS BIGINT) AS t, bin, {inner}
      FROM {table} GROUP BY route_id, {unit} / {per}, bin) AS g"""
    return f"""
INSERT INTO {target} (id, route_id, bucket, bucket_ts, {columns}, latency_hist)
SELECT '{size}-' || (t * {width}) || '-' || route_id, route_id, '{size}', t * {width},
       {outer}, {hist}
FROM {source}
WHERE true
GROUP BY route_id, t
ON CONFLICT (id) DO UPDATE SET {updates}, latency_hist = {merge}
"""
