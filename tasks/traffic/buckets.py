"""Bucket sizes and the running totals of one bucket."""

from __future__ import annotations

MINUTE_MS = 60_000
SIZES = {"1m": MINUTE_MS, "1h": 60 * MINUTE_MS, "1d": 24 * 60 * MINUTE_MS}

# traffic_metrics columns that add up, in the order Totals keeps them
COUNTERS = (
    "requests", "bytes", "errors", "status_2xx", "status_3xx", "status_4xx", "status_5xx",
    "latency_sum_ms",
)


def bucket_start(size: str, ts_ms: int) -> int:
    width = SIZES[size]
    return ts_ms - ts_ms % width


def metric_id(size: str, bucket_ts: int, route_id: str) -> str:
    """The workers' rows are keyed by what they count, so a re-run finds the same row.
    (Rows ProxyOS wrote itself keep their random ids and are left alone.)"""
    return f"{size}-{bucket_ts}-{route_id}"
