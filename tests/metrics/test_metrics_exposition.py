"""The scrape's text writer (workers/api/exposition.py) writes exactly what
prometheus_client's `generate_latest` writes: on generated families of every kind the
library has (label values with any characters, every float, timestamps and `_created`
samples that the writer hands back to the library), on generated `Columns` (against the
library's family of the same rows), and on the collector's real output."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)

from workers.api.exposition import Columns, text_format
from workers.api.metrics import WorkerCollector, render
from workers.config import load

LABEL_NAMES = st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n != "le"),
                       min_size=0, max_size=3, unique=True)
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                   st.sampled_from([0.0, -0.0, 1e-7, 1234567.0, 1e21]))
TEXT = st.text(max_size=12)
NAME = st.from_regex(r"[a-z_:][a-z0-9_:]{0,12}", fullmatch=True)


def _library(metrics: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)

    class Fixed:
        def collect(self):
            return metrics

    registry.register(Fixed())
    return generate_latest(registry)


@st.composite
def families(draw) -> Metric:
    kind = draw(st.sampled_from(["gauge", "counter", "summary", "histogram", "info", "stateset", "gaugehistogram",
                                 "unknown"]))
    name, doc, labels = draw(NAME), draw(TEXT), draw(LABEL_NAMES)
    rows = draw(st.lists(st.tuples(st.lists(TEXT, min_size=len(labels), max_size=len(labels)), VALUES),
                         max_size=5))
    stamp = draw(st.one_of(st.none(), st.floats(0, 2e9)))
    if kind == "gauge":
        family = GaugeMetricFamily(name, doc, labels=labels)
    elif kind == "counter":
        family = CounterMetricFamily(name, doc, labels=labels)
        for values, value in rows:
            family.add_metric(values, abs(value) if not math.isnan(value) else value, timestamp=stamp,
                              created=draw(st.one_of(st.none(), st.floats(0, 2e9))))
        return family
    elif kind == "unknown":
        family = UnknownMetricFamily(name, doc, labels=labels)
    elif kind == "summary":
        family = SummaryMetricFamily(name, doc, labels=labels)
        for values, value in rows:
            family.add_metric(values, count_value=draw(st.integers(0, 10**9)), sum_value=value, timestamp=stamp)
        return family
    elif kind in ("histogram", "gaugehistogram"):
        family = (HistogramMetricFamily if kind == "histogram" else GaugeHistogramMetricFamily)(name, doc,
                                                                                                labels=labels)
        for values, value in rows:
            buckets = [("0.5", 1), ("+Inf", 3)]
            if kind == "histogram":
                family.add_metric(values, buckets, sum_value=value, timestamp=stamp)
            else:
                family.add_metric(values, buckets, gsum_value=value, timestamp=stamp)
        return family
    elif kind == "info":
        family = InfoMetricFamily(name, doc, labels=labels)
        for values, _ in rows:
            family.add_metric(values, {"extra": draw(TEXT)}, timestamp=stamp)
        return family
    else:
        family = StateSetMetricFamily(name, doc, labels=labels)
        for values, _ in rows:
            family.add_metric(values, {"state_" + draw(st.from_regex(r"[a-z]{1,4}", fullmatch=True)): True},
                              timestamp=stamp)
        return family
    for values, value in rows:
        family.add_metric(values, value, timestamp=stamp)
    return family


@hsettings(max_examples=400, deadline=None)
@given(st.lists(families(), max_size=4))
def test_the_writer_writes_what_generate_latest_writes(metrics):
    assert text_format(metrics) == _library(metrics)


@st.composite
def columns(draw) -> Columns:
    kind = draw(st.sampled_from(["gauge", "counter", "info", "summary"]))
    names = draw(st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=4,
                          unique=True))
    split = draw(st.integers(1, len(names))) if kind == "info" else len(names)
    family = Columns(draw(NAME).removesuffix("_total") or "x", draw(TEXT), kind, tuple(names[:split]),
                     info=tuple(names[split:]))
    for _ in range(draw(st.integers(0, 5))):
        values = tuple(draw(st.lists(TEXT, min_size=len(names), max_size=len(names))))
        if kind == "info":
            family.add(values)
        elif kind == "summary":
            family.add(values, draw(st.integers(0, 10**9)), draw(VALUES))
        else:
            family.add(values, draw(VALUES))
    return family


@hsettings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(columns(), families()), max_size=4))
def test_columns_are_written_as_the_librarys_family_of_the_same_rows(mixed):
    as_library = [f.family() if isinstance(f, Columns) else f for f in mixed]
    assert text_format(mixed) == _library(as_library)


def test_the_collectors_real_output_is_written_alike(sqlite_url):
    from db.engine import create_engine
    from db.migrate import upgrade
    from tests.toolkit.factories import add_certificate, add_route

    engine = create_engine(sqlite_url)
    upgrade(engine)
    for n in range(3):
        add_route(engine, domain=f'app{n}.example.test')
    add_certificate(engine, 'app0.example.test', status='active', expires_at=2_000_000_000)
    collector = WorkerCollector(engine, load({"PROXYOS_DATABASE_URL": sqlite_url}), clock=lambda: 1_900_000_000)
    written = render(collector)
    assert written == _library(list(collector.collect()))
    assert b'proxyos_worker_route_info{domain="app2.example.test",route_id="' in written
    assert b'proxyos_worker_certificate_expiry_seconds{certificate_id="' in written
