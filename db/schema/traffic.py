"""Tables and columns of the traffic worker (migrations 0005, 0007 and 0010).

The columns the workers add to ProxyOS's `access_log` and `traffic_metrics` are in
`proxyos.py`, with those tables.

`traffic_metrics` holds `1m` buckets only (ProxyOS's readers sum every row of it in a
time window, whatever its `bucket`); the `1h` and `1d` rollups are in `traffic_rollups`,
with the same columns.
"""

from __future__ import annotations

from sqlalchemy import Index, Table

from .columns import BIG, INT, c, metadata

traffic_ingest_position = Table(
    "traffic_ingest_position",
    metadata,
    c("source", pk=True),  # the configured log path
    c("device", BIG),  # identity of the file being read (st_dev, st_ino)
    c("inode", BIG),
    c("read_offset", BIG, nn=True, default=0),  # bytes consumed: always just after a newline
    c("fingerprint"),  # sha256 of the file's first `fingerprint_len` bytes
    c("fingerprint_len", INT, nn=True, default=0),
    c("lines", BIG, nn=True, default=0),  # running totals
    c("malformed", BIG, nn=True, default=0),
    c("unmatched", BIG, nn=True, default=0),
    c("updated_at", BIG),
)

traffic_state = Table(
    "traffic_state",
    metadata,
    c("name", pk=True),  # ingest_seq: last seq allocated; aggregated_seq: the watermark
    c("value", BIG, nn=True, default=0),
)


traffic_rollups = Table(
    "traffic_rollups",
    metadata,
    c("id", pk=True),  # <bucket>-<bucket_ts>-<route_id>
    c("route_id", nn=True),
    c("bucket", nn=True),  # 1h | 1d
    c("bucket_ts", INT, nn=True),  # ms, the bucket's start
    *(c(name, INT, nn=True, default=0) for name in (
        "requests", "bytes", "errors", "status_2xx", "status_3xx", "status_4xx", "status_5xx",
        "latency_sum_ms")),
    c("latency_hist"),
    Index("ix_traffic_rollups_route_bucket_ts", "route_id", "bucket", "bucket_ts"),
    Index("ix_traffic_rollups_bucket_ts", "bucket", "bucket_ts"),
)


# Every request the workers have counted, per route, since the route's first (migration
# 0010): added to in the transaction that counts rows into the 1m buckets, never pruned,
# so `GET /metrics` reads counters that only grow, at a cost of one row per route.
traffic_route_totals = Table(
    "traffic_route_totals",
    metadata,
    c("route_id", pk=True),
    c("requests", BIG, nn=True, default=0),
    c("errors", BIG, nn=True, default=0),  # status >= 500, as traffic_metrics.errors
    c("bytes", BIG, nn=True, default=0),
)
