"""Latency histograms: percentiles of any bucket or range within the stated bin error."""

from __future__ import annotations

import json
import math
import random

import pytest
import sqlalchemy as sa

from db.schema import access_log
from tasks.traffic import histogram
from tasks.traffic.aggregate import aggregate
from tasks.traffic.ingest import ingest
from tasks.traffic.report import traffic_by_route
from tests.toolkit.caddy_log import append, caddy_line
from tests.toolkit.factories import add_route
from tests.toolkit.traffic import NOW

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


def test_stored_histograms_add_up_and_a_broken_stored_one_counts_as_empty():
    a, b = {3: 2, 10: 5}, {10: 1, 40: 7}
    added = histogram.add_encoded(histogram.encode(a), histogram.encode(b))
    assert histogram.decode(added) == {3: 2, 10: 6, 40: 7}
    new = histogram.encode(b)
    for broken in (None, "", "{}", "not json", "[1, 2]", "17", '{"a": 1}', '{"3": 1.5}'):
        assert histogram.add_encoded(broken, new) == new
    assert histogram.add_encoded(histogram.encode(a), None) == histogram.encode(a)


@pytest.mark.parametrize("seed", range(20))
def test_adding_stored_histograms_equals_adding_their_counts(seed):
    """Bins whose names contain one another (2, 12, 22, 120) and both stored spellings:
    the compact one (spliced as text) and PostgreSQL's spaced one (decoded)."""
    rng = random.Random(seed)

    def random_hist():  # a few bins (spliced), or many (decoded)
        bins = [0, 1, 2, 12, 20, 22, 120, 127] if seed % 2 else range(histogram.MAX_BIN + 1)
        return {k: rng.randint(1, 10**6) for k in rng.sample(bins, rng.randint(1, min(len(bins), 40)))}

    a, b = random_hist(), random_hist()
    expected = histogram.merged([a, b])
    spaced = "{ " + ", ".join(f'"{k}" : {n}' for k, n in a.items()) + " }"
    for stored in (histogram.encode(a), spaced):
        added = histogram.add_encoded(stored, histogram.encode(b))
        assert histogram.decode(added) == expected
        assert json.loads(added) == {str(k): n for k, n in expected.items()}  # valid JSON, no duplicate keys


def test_the_aggregate_replaces_a_broken_stored_histogram_and_adds_to_a_good_one(any_engine, log_path):
    """The merge in the upsert (a function on SQLite, SQL on PostgreSQL) keeps
    `add_encoded`'s rules: counters add up either way."""
    add_route(any_engine, "a.example.com", id="r0")
    append(log_path, "".join(caddy_line("a.example.com", NOW - 30 - i, duration=0.005) for i in range(3)))
    ingest(any_engine, log_path)
    aggregate(any_engine)
    bucket = sa.text("SELECT bucket, requests, latency_hist FROM traffic_metrics WHERE route_id = 'r0'"
                     " UNION ALL SELECT bucket, requests, latency_hist FROM traffic_rollups WHERE route_id = 'r0'")
    with any_engine.begin() as conn:
        before = {b: (n, histogram.decode(h)) for b, n, h in conn.execute(bucket)}
        conn.execute(sa.text("UPDATE traffic_rollups SET latency_hist = 'not json' WHERE bucket = '1h'"))
    assert {b for b in before} == {"1m", "1h", "1d"}
    append(log_path, caddy_line("a.example.com", NOW - 30, duration=0.005))
    ingest(any_engine, log_path)
    aggregate(any_engine)
    with any_engine.connect() as conn:
        after = {b: (n, histogram.decode(h)) for b, n, h in conn.execute(bucket)}
    five_ms = histogram.bin_of(5)
    assert after["1m"] == (4, {five_ms: 4}) and after["1d"] == (4, {five_ms: 4})
    assert after["1h"] == (4, {five_ms: 1})  # the broken histogram counted as empty


def test_stored_percentiles_over_a_range_match_the_raw_rows(any_engine, log_path):
    add_route(any_engine, "a.example.com", id="r0")
    add_route(any_engine, "b.example.com", id="r1")
    rng = random.Random(11)
    lines = []
    for _ in range(4000):
        host = rng.choice(["a.example.com", "b.example.com"])
        duration = rng.lognormvariate(-4 if host.startswith("a") else -2, 1.0)
        lines.append(caddy_line(host, NOW - rng.random() * 5400, duration=duration))
    append(log_path, "".join(lines))
    ingest(any_engine, log_path, keep_per_route=0)  # the raw rows are the reference
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
