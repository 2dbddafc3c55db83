"""Latency histograms: percentiles of any bucket or range within the stated bin error."""

from __future__ import annotations

import math
import random

import pytest
import sqlalchemy as sa
from traffic_helpers import NOW, add_route, append, caddy_line

from db.tables_traffic import access_log
from tasks.traffic import histogram
from tasks.traffic.aggregate import aggregate
from tasks.traffic.ingest import ingest
from tasks.traffic.report import traffic_by_route

QUANTILES = (0.5, 0.95, 0.99)


def exact(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def within_bound(estimate: float, value: float) -> bool:
    return abs(estimate - value) <= histogram.RELATIVE_ERROR * value + 1e-9


def test_bins_cover_each_latency_with_its_stated_width():
    for ms in [0, 1, 2, 3, 7, 8, 9, 100, 999, 1000, 1024, 65_537, 10**7]:
        k = histogram.bin_of(ms)
        low, high = histogram.bin_bounds(k)
        assert low <= ms < high or (k == 0 and ms < 1)
        if k:
            assert high / low == pytest.approx(2 ** 0.25)
    assert histogram.bin_of(None) is None
    assert histogram.bin_of(10**15) == histogram.MAX_BIN


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_of_merged_histograms_are_within_the_bin_error(seed):
    rng = random.Random(seed)
    values = [max(0, round(rng.lognormvariate(rng.uniform(1, 6), rng.uniform(0.3, 2))))
              for _ in range(rng.randint(1, 5000))]
    parts = [values[i::7] for i in range(7)]  # seven buckets, merged
    hist = histogram.merged(
        histogram.decode(histogram.encode({k: n for k, n in _count(p).items()})) for p in parts
    )
    for q in QUANTILES:
        assert within_bound(histogram.percentile(hist, q), exact(values, q))


def _count(values):
    out = {}
    for v in values:
        k = histogram.bin_of(v)
        out[k] = out.get(k, 0) + 1
    return out


def test_an_empty_or_broken_histogram_has_no_percentile():
    assert histogram.percentile({}, 0.5) is None
    assert histogram.decode("not json") == {}
    assert histogram.decode(None) == {}


def test_stored_percentiles_over_a_range_match_the_raw_rows(any_engine, log_path):
    add_route(any_engine, "r0", "a.example.com")
    add_route(any_engine, "r1", "b.example.com")
    rng = random.Random(11)
    lines = []
    for _ in range(4000):
        host = rng.choice(["a.example.com", "b.example.com"])
        duration = rng.lognormvariate(-4 if host.startswith("a") else -2, 1.0)
        lines.append(caddy_line(host, NOW - rng.random() * 5400, duration=duration))
    append(log_path, "".join(lines))
    ingest(any_engine, log_path)
    aggregate(any_engine, batch_rows=900)
    for since in (600, 3600, 5400):  # 10, 60 and 90 one-minute buckets merged
        _, start_ms, rows = traffic_by_route(any_engine, since, NOW)
        with any_engine.connect() as conn:
            for row in rows:
                raw = list(conn.execute(
                    sa.select(access_log.c.latency_ms).where(
                        access_log.c.route_id == row["route_id"],
                        access_log.c.recorded_at >= start_ms // 1000,
                    )
                ).scalars())
                assert row["requests"] == len(raw)
                for q, key in zip(QUANTILES, ("p50_ms", "p95_ms", "p99_ms"), strict=True):
                    assert within_bound(row[key], exact(raw, q)), (since, row["route_id"], q)
