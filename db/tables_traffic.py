"""Tables and columns of the traffic worker (migration 0005).

Two ProxyOS tables gain columns here (appended to the shared Table objects, so queries
can name them): `access_log.seq` (the ingest sequence number, NULL for rows ProxyOS
wrote itself), `access_log.latency_bin` and `traffic_metrics.latency_hist`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Table

from db.tables import INT, access_log, c, metadata, traffic_metrics

# may pass 2^31: BIGINT on PostgreSQL (SQLite's INTEGER is 64-bit already)
BIG = BigInteger().with_variant(INT(), "sqlite")

if "seq" not in access_log.c:
    access_log.append_column(c("seq", BIG))
    access_log.append_column(c("latency_bin", INT))
    Index("ix_access_log_seq", access_log.c.seq)
if "latency_hist" not in traffic_metrics.c:
    traffic_metrics.append_column(c("latency_hist"))  # JSON object {"bin": count}

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
