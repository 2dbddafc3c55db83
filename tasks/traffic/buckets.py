"""Bucket sizes, and the traffic_metrics columns that add up."""

from __future__ import annotations

MINUTE_MS = 60_000
SIZES = {"1m": MINUTE_MS, "1h": 60 * MINUTE_MS, "1d": 24 * 60 * MINUTE_MS}

# traffic_metrics columns that add up
COUNTERS = (
    "requests", "bytes", "errors", "status_2xx", "status_3xx", "status_4xx", "status_5xx",
    "latency_sum_ms",
)


def bucket_table(size: str) -> str:
    """`1m` buckets are ProxyOS's `traffic_metrics` (its readers add up every row there,
    whatever its size); longer ones are the workers' `traffic_rollups`."""
    return "traffic_metrics" if size == "1m" else "traffic_rollups"


def bucket_start(size: str, ts_ms: int) -> int:
    width = SIZES[size]
    return ts_ms - ts_ms % width
