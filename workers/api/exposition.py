"""Prometheus's text format (version 0.0.4) for a collector's metric families: byte for
byte what `prometheus_client.generate_latest` writes, at a fraction of its cost.

`generate_latest` spends about 5 us on every sample on this kind of machine (a regular
expression for each label name, a sort and several `format` calls per line): about 60 ms
for the ~12,000 samples of 1,000 routes, more than the whole scrape may cost. Here the
work that is the same for every sample of a family is done once per family (its name and
its label names checked, the labels' order found) and repeated values are formatted
once. The families are still the library's (`GaugeMetricFamily` ...), with its naming,
and its `floatToGoString` formats the values. A family this writer does not reproduce
exactly (samples with a timestamp or an exemplar, OpenMetrics `_created`/`_gsum`/
`_gcount` samples, names outside the legacy character set) is rendered by
`generate_latest` itself.

The families with a row per route or certificate are `Columns`: label values and values
as plain tuples, written without building the library's `Sample` objects (a named tuple
and a dict each: about as costly as writing the line); `Columns.family()` is the same
family as the library's, for the library's writer and the tests.
tests/metrics/test_metrics_exposition.py checks that both writers agree, on generated
families and columns and on the collector's real output.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.utils import floatToGoString

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter": "counter", "gauge": "gauge", "summary": "summary", "histogram": "histogram",
          "info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_SUFFIX = {"counter": "_total", "info": "_info"}
_OPENMETRICS_ONLY = ("_created", "_gsum", "_gcount")


class _Other(Exception):
    """This family needs the library's own writer."""


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


@dataclass
class Columns:
    """A gauge, counter, info or summary family with fixed label names (`labels`; an info
    family adds `info`, one value each for its info labels): `add((label values...),
    value)`, or for a summary `add((label values...), count, sum)`."""

    name: str
    documentation: str
    kind: str
    labels: tuple[str, ...]
    info: tuple[str, ...] = ()
    rows: list[tuple] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = (*self.labels, *self.info)
        if (not names or self.kind not in ("gauge", "counter", "info", "summary")
                or not _METRIC_NAME.fullmatch(self.name)
                or self.name.endswith("_total") or not all(_LABEL_NAME.fullmatch(n) for n in names)
                or len(set(names)) != len(names)):
            raise ValueError(f"not a family Columns can write: {self.name} ({self.kind}) {names}")

    def add(self, values: tuple[str, ...], *numbers: Any) -> None:
        self.rows.append((values, *numbers))

    def family(self) -> Metric:
        """The same family as the library's own."""
        if self.kind == "gauge":
            family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        elif self.kind == "counter":
            family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        elif self.kind == "summary":
            family = SummaryMetricFamily(self.name, self.documentation, labels=self.labels)
        else:
            family = InfoMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, *numbers in self.rows:
            if self.kind == "info":
                family.add_metric(values[:len(self.labels)], dict(zip(self.info, values[len(self.labels):],
                                                                        strict=True)))
            elif self.kind == "summary":
                family.add_metric(values, count_value=numbers[0], sum_value=numbers[1])
            else:
                family.add_metric(values, numbers[0])
        return family


def _number(value: Any, numbers: dict[float, str]) -> str:
    if value == 0:  # 0.0 and -0.0 are one key but two texts
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    text = numbers.get(value)
    if text is None:
        text = floatToGoString(value)
        if text != "NaN":  # NaN is never equal to itself: not a key to keep
            numbers[value] = text
    return text


def _needs_escaping(rows: list[tuple]) -> bool:
    """Whether any label value holds a backslash, a newline or a double quote (one scan of
    them all: the common case, ids and domains, needs no escaping at all)."""
    joined = "\x00".join(["\x00".join(row[0]) for row in rows])
    return "\\" in joined or "\n" in joined or '"' in joined


def _columns(columns: Columns, numbers: dict[float, str]) -> str:
    name = columns.name + _SUFFIX.get(columns.kind, "")
    documentation = columns.documentation.replace("\\", r"\\").replace("\n", r"\n")
    head = f"# HELP {name} {documentation}\n# TYPE {name} {_TYPES[columns.kind]}\n"
    names = (*columns.labels, *columns.info)
    width = len(names)
    # One line's template, labels in the library's order (sorted by name); the label
    # values and the value go in as arguments of `format`, never into the template.
    labels = ",".join(f'{names[i]}="{{{i}}}"' for i in sorted(range(width), key=names.__getitem__))
    if columns.kind == "summary":
        template = f"{name}_count{{{{{labels}}}}} {{{width}}}\n{name}_sum{{{{{labels}}}}} {{{width + 1}}}\n"
    elif columns.kind == "info":
        template = f"{name}{{{{{labels}}}}} 1.0\n"
    else:
        template = f"{name}{{{{{labels}}}}} {{{width}}}\n"
    line = template.format
    rows = columns.rows
    if _needs_escaping(rows):
        rows = [(tuple(_escape_value(v) for v in values), *figures) for values, *figures in rows]
    known = numbers.get
    if columns.kind == "info":
        lines = [line(*values) for (values,) in rows]
    elif columns.kind == "summary":
        lines = [line(*values, known(count) or _number(count, numbers), known(total) or _number(total, numbers))
                 for values, count, total in rows]
    else:
        lines = [line(*values, known(value) or _number(value, numbers)) for values, value in rows]
    return head + "".join(lines)


def _family(metric: Metric, numbers: dict[float, str]) -> str:
    if metric.type not in _TYPES or not _METRIC_NAME.fullmatch(metric.name):
        raise _Other
    name = metric.name + _SUFFIX.get(metric.type, "")
    documentation = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    lines = [f"# HELP {name} {documentation}\n# TYPE {name} {_TYPES[metric.type]}\n"]
    add = lines.append
    orders: dict[tuple[str, ...], tuple[str, ...]] = {}  # label names as given -> as written (sorted)
    openmetrics_only = {metric.name + suffix for suffix in _OPENMETRICS_ONLY}
    checked_names: set[str] = set()
    for sample in metric.samples:
        if sample.timestamp is not None or sample.exemplar is not None or sample.native_histogram is not None:
            raise _Other
        if sample.name not in checked_names:
            if sample.name in openmetrics_only or not _METRIC_NAME.fullmatch(sample.name):
                raise _Other
            checked_names.add(sample.name)
        labels = sample.labels
        text = _number(sample.value, numbers)
        if labels:
            given = tuple(labels)
            order = orders.get(given)
            if order is None:
                if not all(_LABEL_NAME.fullmatch(key) for key in given):
                    raise _Other
                order = orders[given] = tuple(sorted(given))
            pairs = ",".join([f'{key}="{_escape_value(labels[key])}"' for key in order])
            add(f"{sample.name}{{{pairs}}} {text}\n")
        else:
            add(f"{sample.name} {text}\n")
    return "".join(lines)


def _by_the_library(metric: Metric) -> str:
    registry = CollectorRegistry(auto_describe=False)

    class One:
        def collect(self) -> Iterable[Metric]:
            return [metric]

    registry.register(One())
    return generate_latest(registry).decode("utf-8")


def text_format(metrics: Iterable[Metric | Columns]) -> bytes:
    """The families in Prometheus's text format, as `generate_latest` would write them."""
    numbers: dict[float, str] = {}
    parts = []
    for metric in metrics:
        if isinstance(metric, Columns):
            parts.append(_columns(metric, numbers))
            continue
        try:
            parts.append(_family(metric, numbers))
        except _Other:
            parts.append(_by_the_library(metric))
    return "".join(parts).encode("utf-8")
