"""Tables and columns of the traffic worker (migration 0005).

Two ProxyOS tables gain columns here (appended to the shared Table objects, so queries
can name them): `access_log.seq` (the ingest sequence number, NULL for rows ProxyOS
wrote itself), `access_log.latency_bin` and `traffic_metrics.latency_hist`.
"""

from __future__ import annotations

from sqlalchemy import Index, Table

from db.tables import INT, access_log, c, metadata, traffic_metrics

if "seq" not in access_log.c:
    access_log.append_column(c("seq", INT))
    access_log.append_column(c("latency_bin", INT))
    Index("ix_access_log_seq", access_log.c.seq)
if "latency_hist" not in traffic_metrics.c:
    traffic_metrics.append_column(c("latency_hist"))  # JSON object {"bin": count}

traffic_ingest_position = Table(
    "traffic_ingest_position",
    metadata,
    c("source", pk=True),  # the configured log path
    c("device", INT),  # identity of the file being read (st_dev, st_ino)
    c("inode", INT),
    c("read_offset", INT, nn=True, default=0),  # bytes consumed: always just after a newline
    c("fingerprint"),  # sha256 of the file's first `fingerprint_len` bytes
    c("fingerprint_len", INT, nn=True, default=0),
    c("lines", INT, nn=True, default=0),  # running totals
    c("malformed", INT, nn=True, default=0),
    c("unmatched", INT, nn=True, default=0),
    c("updated_at", INT),
)

traffic_state = Table(
    "traffic_state",
    metadata,
    c("name", pk=True),  # ingest_seq: last seq allocated; aggregated_seq: the watermark
    c("value", INT, nn=True, default=0),
)
